"""bench/bench_lr_learned_lam.py: its quick mode runs every attacker on a real split of the
learned setting, records the lam each batch returned beside the defender's at the batch's
end and the iterate kept, and reports."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
import bench_lr_learned_lam as bl  # noqa: E402
from test_data import SHARED, needs_shared  # noqa: E402


@needs_shared
def test_quick_mode_runs_the_attackers_and_reports(tmp_path, capsys):
    out = tmp_path / "l.json"
    bl.main(["--task", "mnist", "--quick", "--data-dir", str(SHARED), "--json", str(out)])
    res = json.loads(out.read_text())
    assert sorted(k.split("/")[3] for k in res) == ["alg2", "last", "strong"]
    rows = {k.split("/")[3]: v["rows"] for k, v in res.items()}
    assert all(len(r) == 3 for r in rows.values())              # 0 %, 2 quick batches
    assert [r["best"] for r in rows["last"][1:]] == [None, None]   # never an earlier one
    # the clean batch: the same set and lam for every attacker
    assert len({(r[0]["test_error"], r[0]["lam"]) for r in rows.values()}) == 1
    table = capsys.readouterr().out
    assert "| mnist-quick/l2/r0 | last |" in table and "last last" in table
    bl.main(["--report", str(out)])                    # the table alone, from the file
    assert capsys.readouterr().out.count("mnist-quick/l2/r0") == 3
