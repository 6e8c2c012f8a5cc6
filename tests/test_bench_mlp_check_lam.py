"""bench/bench_mlp_check_lam.py: its quick mode runs every attacker on a real split, scores
each poisoned set from the same Xavier draws (the first the record's own), and reports."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
import bench_mlp_check_lam as bc  # noqa: E402
from test_data import SHARED, needs_shared  # noqa: E402


@needs_shared
def test_quick_mode_pairs_the_attackers_and_reports(tmp_path, capsys):
    out = tmp_path / "c.json"
    bc.main(["--task", "mnist", "--quick", "--starts", "2", "--data-dir", str(SHARED),
             "--json", str(out)])
    res = json.loads(out.read_text())
    assert sorted(k.split("/")[4] for k in res) == ["alg2", "final", "own"]
    rows = {k.split("/")[4]: v["rows"] for k, v in res.items()}
    assert all(len(r) == 3 and all(len(c["test_errors"]) == 2 for c in r)
               for r in rows.values())
    # the clean batch is the same set, the same lam start and the same draws for all
    assert len({json.dumps(r[0]["test_errors"]) for r in rows.values()}) == 1
    table = capsys.readouterr().out
    assert "| mnist-quick/l2/learned/r0 | final |" in table
    bc.main(["--report", str(out)])                    # the table alone, from the file
    assert capsys.readouterr().out.count("mnist-quick/l2/learned/r0") == 3
