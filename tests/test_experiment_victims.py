"""The attack method and the victims in the experiment layer and on the command line:
``[attack] method/victim`` and ``[test] victims`` are checked before any work, recorded per
victim, summarised and plotted; the fingerprints of experiments written before these keys
existed do not change; ``hvpoison plot`` shows the poisoning points."""
import json

import numpy as np
import pytest

from hvpoison.cli import main
from hvpoison.experiments import Experiment, format_table, run

BASE = {"name": "v", "repetitions": 1, "seed": 1,
        "data": {"task": "synthetic2d", "n_tr": 40, "n_test": 300},
        "defense": {"settings": ["none", "large", "learned"], "lam_large": -1.0},
        "attack": {"n_poison": 4, "n_batches": 2, "iters": 6, "T": 40, "eta": 0.5},
        "test": {"T": 40, "eta": 0.5, "kuncheva_k": [1]}}


def cfg(**sections):
    out = json.loads(json.dumps(BASE))
    for sec, kv in sections.items():
        out.setdefault(sec, {}).update(kv)
    return out


def test_fingerprints_of_older_experiments_are_unchanged():
    # the value before [attack] method/victim and [test] victims existed (commit 700f237)
    assert Experiment().fingerprint() == "9b812e9d60eda409"
    explicit = Experiment.from_dict({"attack": {"iters": 30, "alpha": 1.0, "method": "alg2",
                                                "victim": "gd"}, "test": {"victims": ["gd"]}})
    assert explicit.fingerprint() == Experiment().fingerprint()
    strong = Experiment.from_dict({"attack": {"method": "strong"}})
    assert strong.fingerprint() != Experiment().fingerprint()
    assert Experiment.from_dict({"attack": {"method": "strong", "iters": 100, "alpha": 0.02}}
                                ).fingerprint() == strong.fingerprint()


@pytest.mark.parametrize("sections,msg", [
    ({"attack": {"method": "best"}}, "attack.method: expected one of ['alg2', 'strong']"),
    ({"attack": {"victim": "oracle"}}, "attack.victim: expected one of ['gd', 'exact']"),
    ({"attack": {"victim": "exact"}}, "attack.victim: expected 'gd' with attack.method"),
    ({"attack": {"method": "strong", "victim": "exact"}},
     "defense.settings: expected no 'none' with attack.victim = 'exact'"),
    ({"test": {"victims": []}}, "test.victims: expected a non-empty list"),
    ({"test": {"victims": ["gd", "gd"]}}, "test.victims: expected a non-empty list"),
    ({"test": {"victims": ["sgd"]}}, "test.victims: expected a non-empty list"),
    ({"test": {"victims": ["exact"]}, "defense": {"penalty": "l1"}},
     "test.victims: expected 'exact' only with model.kind = 'lr' and defense.penalty = 'l2'"),
    ({"test": {"victims": ["exact"]}, "model": {"kind": "mlp"},
      "defense": {"settings": ["none"]}}, "test.victims: expected 'exact' only with"),
    ({"attack": {"iters": 0}}, "attack.iters: expected a positive integer"),
    ({"attack": {"alpha": -1.0}}, "attack.alpha: expected a positive number"),
    ({"attack": {"alpha": "big"}}, "attack.alpha: expected float, got 'big'"),
    ({"attack": {"method": 3}}, "attack.method: expected str, got 3"),
])
def test_bad_method_and_victim_keys(sections, msg):
    with pytest.raises(ValueError) as e:
        Experiment.from_dict(cfg(**sections))
    assert msg in str(e.value)


def test_records_and_summary_per_victim(tmp_path):
    s = run(cfg(attack={"method": "strong"}, test={"victims": ["gd", "exact"]}), tmp_path,
            progress=False)
    rec = json.loads((tmp_path / "records" / "r000-large-b2.json").read_text())
    assert set(rec["victims"]) == {"gd", "exact"}
    assert rec["victims"]["gd"]["test_error"] == rec["test_error"]       # the first victim
    none = json.loads((tmp_path / "records" / "r000-none-b2.json").read_text())
    assert none["victims"]["exact"] is None                 # no optimum without a penalty
    st = s["settings"]
    assert "test_error@exact" in st["large"] and "test_error@exact" not in st["none"]
    assert s["method"] == "strong" and s["victims"] == ["gd", "exact"]
    text = format_table(s)
    assert "victim exact" in text and "victim gd" in text and "attack strong" in text
    z = np.load(tmp_path / "records" / "r000-large-b2.npz")
    assert z["X0"].shape == z["Xp"].shape and not np.array_equal(z["X0"], z["Xp"])


def test_alg2_records_are_as_before(tmp_path):
    """Without the new keys a record has no per-victim part (the same fields as before)."""
    run(cfg(), tmp_path, progress=False)
    rec = json.loads((tmp_path / "records" / "r000-large-b1.json").read_text())
    assert "victims" not in rec


def test_strong_attack_against_the_exact_victim_hurts_it_more(tmp_path):
    """Matching the victim matters: points tuned for the optimum do more damage there than
    Alg. 2's (tuned for T GD steps), on the embedded MNIST subset."""
    common = {"data": {"task": "mnist-mini", "n_tr": 200, "n_test": 600},
              "defense": {"settings": ["large"], "lam_large": -5.3},
              "attack": {"n_poison": 20, "n_batches": 1, "T": 100, "eta": 0.1},
              "test": {"victims": ["exact"], "T": 100, "eta": 0.1, "kuncheva_k": [10]}}
    alg2 = run({**BASE, **common, "name": "a"}, tmp_path / "a", progress=False)
    strong = run({**BASE, **common, "name": "s",
                  "attack": {**common["attack"], "method": "strong", "victim": "exact",
                             "iters": 40}}, tmp_path / "s", progress=False)
    e_a = alg2["settings"]["large"]["test_error@exact"]["mean"][-1][0]
    e_s = strong["settings"]["large"]["test_error@exact"]["mean"][-1][0]
    assert e_s > e_a


def test_cli_attack_with_method_and_victims_and_the_poison_picture(tmp_path, capsys):
    out = tmp_path / "a"
    assert main(["attack", "--task", "mnist-mini", "--n-tr", "100", "--n-test", "200",
                 "--n-poison", "10", "--n-batches", "1", "--iters", "3", "-T", "20",
                 "--lam", "-3", "--method", "strong", "--victim", "exact",
                 "--victims", "exact", "gd", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "victim exact" in text and "victim gd" in text
    assert (out / "poison.png").stat().st_size > 5_000
    assert json.loads((out / "summary.json").read_text())["method"] == "strong"
    (out / "poison.png").unlink()
    assert main(["plot", str(out)]) == 0
    assert (out / "poison.png").is_file()


def test_cli_bad_method_and_victim(tmp_path, capsys):
    for args, msg in ((["--method", "best"], "invalid choice: 'best'"),
                      (["--method", "strong", "--victim", "exact", "--lam", "none"],
                       "defense.settings: expected no 'none' with attack.victim = 'exact'"),
                      (["--victims", "exact", "--penalty", "l1"],
                       "test.victims: expected 'exact' only with")):
        try:                              # argparse exits, the command returns 2
            code = main(["attack", *args, "--out", str(tmp_path / "x")])
        except SystemExit as e:
            code = e.code
        assert code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert msg in err[-1] and "Traceback" not in "".join(err)
    assert not (tmp_path / "x").exists()          # nothing written for a bad experiment


def test_the_protocol_is_the_one_the_committed_runs_used():
    """protocol.py is the one home of the reproduction settings: its experiments have the
    fingerprints of the committed full-mode runs, and a strong-attack variant is named and
    fingerprinted apart."""
    from pathlib import Path

    from hvpoison.experiments import protocol
    from hvpoison.figures import FIGURES

    runs = Path(__file__).resolve().parents[1] / "reproduce" / "runs"
    checked = 0
    for fig in protocol.FIGURES.values():
        for cfg in fig.experiments():
            meta = runs / cfg["name"] / "experiment.json"
            if meta.is_file():
                stored = json.loads(meta.read_text())["fingerprint"]
                assert Experiment.from_dict(cfg).fingerprint() == stored, cfg["name"]
                checked += 1
    assert checked >= 12
    strong = protocol.lr_config("mnist", "l2", method="strong", victim="exact",
                                victims=["gd", "exact"], settings=("large", "learned"))
    assert strong["name"] == "lr-mnist-l2-strong-exact"
    exp = Experiment.from_dict(strong)
    assert exp.attack.iters is None and exp.attack.method == "strong"
    assert exp.fingerprint() != Experiment.from_dict(protocol.lr_config("mnist", "l2")).fingerprint()
    assert set(FIGURES) == set(protocol.FIGURES)


# -- a results folder that checks itself (issue #15, items 3-5) -------------------------
CORRUPTIONS = {
    "empty json": lambda rec, npz: rec.write_text(""),
    "garbage json": lambda rec, npz: rec.write_text("{not json"),
    "empty object": lambda rec, npz: rec.write_text("{}"),
    "a list": lambda rec, npz: rec.write_text("[1, 2]"),
    "another record's fields": lambda rec, npz: rec.write_text(
        rec.read_text().replace('"b": 2', '"b": 1')),
    "nan test error": lambda rec, npz: rec.write_text(
        json.dumps({**json.loads(rec.read_text()), "test_error": float("nan")})),
    "truncated npz": lambda rec, npz: npz.write_bytes(npz.read_bytes()[:100]),
    "garbage npz": lambda rec, npz: npz.write_bytes(b"PK\x03\x04garbage"),
    "missing npz": lambda rec, npz: npz.unlink(),
    "npz of another batch": lambda rec, npz: npz.write_bytes(
        npz.with_name(npz.name.replace("-b2", "-b1")).read_bytes()),
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished")
    return out, run(cfg(), out, progress=False)


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_a_corrupt_record_is_quarantined_named_and_recomputed(finished, tmp_path, name):
    import shutil

    src, summary = finished
    out = tmp_path / "r"
    shutil.copytree(src, out)
    rec, npz = out / "records" / "r000-large-b2.json", out / "records" / "r000-large-b2.npz"
    CORRUPTIONS[name](rec, npz)
    with pytest.warns(UserWarning, match="r000-large-b2.json: .*moved to .*quarantine"):
        again = run(cfg(), out, progress=False)
    assert (out / "records" / "quarantine" / "r000-large-b2.json").exists()
    assert json.loads(rec.read_text())["b"] == 2                       # recomputed
    assert again["settings"]["large"]["test_error"] == summary["settings"]["large"]["test_error"]


def test_records_without_experiment_json_are_refused(finished, tmp_path):
    import shutil

    out = tmp_path / "r"
    shutil.copytree(finished[0], out)
    (out / "experiment.json").unlink()
    with pytest.raises(ValueError, match="holds records but no experiment.json"):
        run(cfg(attack={"iters": 3}), out, progress=False)
    assert not (out / "experiment.json").exists()
    run(cfg(attack={"iters": 3}), out, progress=False, overwrite=True)   # explicit: allowed


def test_a_second_run_on_a_locked_folder_stops_at_once(tmp_path):
    from hvpoison.experiments import Store

    import os

    with Store(tmp_path).lock():
        tmp = tmp_path / "records" / ".r000-none-b0.json.x.tmp"   # the holder's write
        tmp.parent.mkdir()
        tmp.write_text("in flight")
        with pytest.raises(ValueError, match=f"in use by hvpoison process {os.getpid()}"):
            run(cfg(), tmp_path, progress=False)
        assert tmp.exists()                 # the refused run touched nothing
        assert not (tmp_path / "experiment.json").exists()
    run(cfg(attack={"n_batches": 1}), tmp_path, progress=False)   # released: runs
    assert not tmp.exists()


def test_a_killed_run_leaves_no_stale_lock(tmp_path):
    import subprocess
    import sys

    code = ("import sys, time; from hvpoison.experiments import Store\n"
            f"s = Store({str(tmp_path)!r}).lock(); s.__enter__(); print('locked', flush=True);"
            " time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    with pytest.raises(ValueError, match="in use by hvpoison process"):
        run(cfg(attack={"n_batches": 1}), tmp_path, progress=False)
    p.kill()
    p.wait()
    run(cfg(attack={"n_batches": 1}), tmp_path, progress=False)   # the OS released it


# -- every configuration error before any work (issue #15, item 8) ----------------------
BAD_FILES = [
    ('[attack]\nalpha = inf', "attack.alpha: expected a positive finite number"),
    ('[attack]\nalpha = 0', "attack.alpha: expected a positive"),
    ('[attack]\neta = nan', "attack.eta: expected a positive finite number"),
    ('[test]\neta = -0.1', "test.eta: expected a positive finite number"),
    ('[attack]\nalpha_lam = inf', "attack.alpha_lam: expected a positive finite number"),
    ('[attack]\nlam_bounds = [4, -10]', "attack.lam_bounds: expected [low, high]"),
    ('[attack]\nlam_bounds = [1.0]', "attack.lam_bounds: expected [low, high]"),
    ('[attack]\nlam_bounds = ["a", "b"]', "attack.lam_bounds: expected [low, high]"),
    ('[attack]\nlam_bounds = [-10, inf]', "attack.lam_bounds: expected [low, high]"),
    ('[test]\nkuncheva_k = ["a"]', "test.kuncheva_k: expected a list of positive integers"),
    ('[test]\nkuncheva_k = [-5]', "test.kuncheva_k: expected a list of positive integers"),
    ('[test]\nkuncheva_k = [50.5]', "test.kuncheva_k: expected a list of positive integers"),
    ('[model]\nkind = "mlp"\nhidden = [0]', "model.hidden: expected a non-empty list"),
    ('[model]\nkind = "mlp"\nhidden = [-3]', "model.hidden: expected a non-empty list"),
    ('[model]\nkind = "mlp"\nhidden = [3.5]', "model.hidden: expected a non-empty list"),
    ('[model]\nkind = "mlp"\nhidden = []', "model.hidden: expected a non-empty list"),
    ('[model]\nkind = "mlp"\nslope = -1', "model.slope: expected a finite number >= 0"),
    ('[model]\nkind = "mlp"\nslope = nan', "model.slope: expected a finite number >= 0"),
    ('[model]\nhidden = [8]', "model.hidden: expected no value with model.kind = 'lr'"),
    ('[model]\nslope = 0.2', "model.slope: expected no value with model.kind = 'lr'"),
    ('[defense]\nlam_init = inf', "defense.lam_init: expected a finite number"),
    ('[defense]\nlam_init = 9.0', "defense.lam_init: expected a value inside"),
    ('[defense]\nlam_large = nan', "defense.lam_large: expected a finite number"),
    ('[defense]\ncv_folds = 1', "defense.cv_folds: expected an integer in [2,"),
    ('[defense]\ncv_folds = 500', "defense.cv_folds: expected an integer in [2,"),
    ('[defense]\ncv_grid = []', "defense.cv_grid: expected a non-empty list"),
    ('[defense]\ncv_grid = ["x"]', "defense.cv_grid: expected a non-empty list"),
    ('[defense]\ncv_grid = [nan]', "defense.cv_grid: expected a non-empty list"),
    ('seed = -1', "seed: expected a non-negative integer"),
    ('name = ""', "name: expected a non-empty name"),
    ('name = "a/b"', "name: expected a non-empty name"),
    ('[data]\nn_val = 0', "data.n_val: expected a positive integer"),
    ('[data]\ntask = "mnist08"', "data.task: expected one of"),
    ('[attack]\nmemory = "disk"', "attack.memory: expected"),
    ('[attack]\nT = 0', "attack.T: expected a positive integer"),
    ('[attack]\nmethod = "best"', "attack.method: expected one of"),
    ('[test]\nvictims = ["exact"]\n[defense]\npenalty = "l1"', "test.victims: expected 'exact'"),
    ('[attack]\nbogus = 1', "attack.bogus: unknown key"),
]


@pytest.mark.parametrize("text,msg", BAD_FILES, ids=[m.split(":")[0] + f"-{i}"
                                                     for i, (_, m) in enumerate(BAD_FILES)])
def test_a_bad_experiment_file_is_one_line_exit_2_nothing_written(tmp_path, capsys, text, msg):
    path = tmp_path / "bad.toml"
    head = ("" if text.startswith("name") else 'name = "bad"\n') + \
        ("" if "[data]" in text else '[data]\ntask = "mnist-mini"\nn_tr = 100\n')
    # keep the top-level keys above the first table
    top = [ln for ln in text.splitlines() if "=" in ln and not text.startswith("[")]
    path.write_text((("\n".join(top) + "\n") if top else "") + head
                    + ("" if top else text + "\n"))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0], err
    assert not out.exists()


def test_killing_the_driver_leaves_no_worker_behind(tmp_path):
    """SIGKILL of `hvpoison run --jobs 2` (issue #15, item 6): the workers die with it."""
    import signal
    import subprocess
    import sys
    import time

    psutil = pytest.importorskip("psutil")
    path = tmp_path / "e.toml"
    path.write_text('name = "k"\nrepetitions = 3\n[data]\ntask = "mnist-mini"\nn_tr = 300\n'
                    '[attack]\nn_poison = 20\nn_batches = 3\niters = 20\nT = 100\n'
                    '[test]\nT = 100\n')
    p = subprocess.Popen([sys.executable, "-m", "hvpoison", "run", str(path), "--out",
                          str(tmp_path / "o"), "--jobs", "2", "--quiet"])
    deadline = time.time() + 120
    workers = []
    while time.time() < deadline and len(workers) < 2:
        time.sleep(0.5)
        workers = [c for c in psutil.Process(p.pid).children(recursive=True)
                   if "resource_tracker" not in " ".join(c.cmdline())]
    assert len(workers) >= 2, "the workers did not start"
    p.send_signal(signal.SIGKILL)
    p.wait()
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, [w.pid for w in alive]
