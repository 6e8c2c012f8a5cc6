"""A results folder that checks itself and an experiment checked before any work (issue
#15): corrupt records are quarantined, named and recomputed; a folder is locked while a run
uses it; records without experiment.json are refused; every bad key of an experiment file is
one line naming it, exit 2, nothing written; killing the driver kills its workers; a
diverging step is an error."""
import json

import pytest

from hvpoison.cli import main
from hvpoison.experiments import run

from test_experiment_victims import cfg


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
SMALL_DATA = '[data]\ntask = "mnist-mini"\nn_tr = 250\nn_test = 200\n'
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
    ('name = ""', "name: expected a plain folder name"),
    ('name = "a/b"', "name: expected a plain folder name"),
    ('name = ".."', "name: expected a plain folder name"),      # issue 27: no escape from
    ('name = "."', "name: expected a plain folder name"),       # results/
    ('name = "a\\\\b"', "name: expected a plain folder name"),
    ('name = " x"', "name: expected a plain folder name"),
    ('name = "a\\nb"', "name: expected a plain folder name"),
    ('[data]\nn_val = 0', "data.n_val: expected a positive integer"),
    ('[data]\ntask = "mnist08"', "data.task: expected one of"),
    ('[attack]\nmemory = "disk"', "attack.memory: expected"),
    ('[attack]\nT = 0', "attack.T: expected a positive integer"),
    ('[attack]\nmethod = "best"', "attack.method: expected one of"),
    ('[test]\nvictims = ["exact"]\n[defense]\npenalty = "l1"', "test.victims: expected 'exact'"),
    ('[attack]\nbogus = 1', "attack.bogus: unknown key"),
    ('[attack]\nmethod = "all"\nalpha = 2.0', "attack.alpha: expected no value with "
     "attack.method = 'all'"),                                   # issue 27
    ('[attack]\nmethod = "flip"\nalpha = 2.0', "attack.alpha: expected no value"),
    ('[defense]\nlam_large = 1e6', "defense.lam_large: expected a log-scale lam with a "
     "finite exp(lam)"),
    ('[attack]\nlam_bounds = [-10, 1e6]', "attack.lam_bounds: expected a log-scale lam"),
    # decided by the data (runner.preflight): gradient descent would diverge at once
    (SMALL_DATA + '[defense]\nsettings = ["large"]\nlam_large = 4.0',
     "defense.lam_large: expected a value at which gradient descent with attack.eta = 0.1"),
    (SMALL_DATA + '[attack]\neta = 1.0\nn_poison = 5', "attack.eta: expected a value at "
     "which gradient descent"),
    (SMALL_DATA + '[test]\neta = 0.5', "test.eta: expected a value at which gradient descent"),
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


# -- nothing a user wrote is lost, no data mixed (issue 27) --------------------------------
def test_a_record_copied_in_from_another_experiment_is_quarantined_named(finished, tmp_path):
    """Records carry their experiment's fingerprint: one copied from another experiment's
    records/ is refused (moved aside, named), not used."""
    import shutil

    src, summary = finished
    other = tmp_path / "other"
    run({**cfg(), "seed": 7}, other, progress=False)
    out = tmp_path / "r"
    shutil.copytree(src, out)
    for suffix in (".json", ".npz"):
        shutil.copy(other / "records" / f"r000-large-b2{suffix}", out / "records")
    with pytest.warns(UserWarning, match=r"r000-large-b2.json: a record of another "
                      r"experiment \(fingerprint \w+, this folder's \w+\); moved to"):
        again = run(cfg(), out, progress=False)
    q = out / "records" / "quarantine"
    assert (q / "r000-large-b2.json").exists() and (q / "r000-large-b2.npz").exists()
    assert again["settings"]["large"]["test_error"] == summary["settings"]["large"]["test_error"]
    rec = json.loads((out / "records" / "r000-large-b2.json").read_text())
    assert rec["fingerprint"] == json.loads((out / "experiment.json").read_text())["fingerprint"]


def test_a_foreign_record_of_before_fingerprints_is_told_by_its_seeds(finished, tmp_path):
    import shutil

    out = tmp_path / "r"
    shutil.copytree(finished[0], out)
    rec = out / "records" / "r000-large-b1.json"
    d = json.loads(rec.read_text())
    d.pop("fingerprint")
    d["seeds"] = {k: v + 1 for k, v in d["seeds"].items()}
    rec.write_text(json.dumps(d))
    with pytest.warns(UserWarning, match="r000-large-b1.json: a record of another experiment"):
        run(cfg(), out, progress=False)


def test_temporary_files_of_a_killed_write_are_cleaned_on_resume(finished, tmp_path):
    import shutil

    out = tmp_path / "r"
    shutil.copytree(finished[0], out)
    for p in (out / ".summary.json1234.tmp", out / ".experiment.jsonab.tmp",
              out / "records" / ".r000-large-b2.npzx.tmp"):
        p.write_bytes(b"half a write")
    run(cfg(), out, progress=False)
    assert not list(out.glob(".*.tmp")) and not list((out / "records").glob(".*.tmp"))


def test_a_folder_with_the_users_own_files_is_not_overwritten(tmp_path):
    (tmp_path / "summary.csv").write_text("my own numbers\n")
    with pytest.raises(ValueError, match=r"--out: expected a new or results folder, got .*"
                       r"holds summary.csv but no experiment.json"):
        run(cfg(), tmp_path, progress=False)
    assert (tmp_path / "summary.csv").read_text() == "my own numbers\n"
    assert not (tmp_path / "experiment.json").exists()


def test_an_experiment_named_dotdot_cannot_write_outside_results(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "summary.csv").write_text("my own numbers\n")
    path = tmp_path / "e.toml"
    path.write_text('name = ".."\n[data]\ntask = "mnist-mini"\nn_tr = 100\n')
    assert main(["run", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "name: expected a plain folder name" in err[0] and "'..'" in err[0]
    assert (tmp_path / "summary.csv").read_text() == "my own numbers\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.toml", "summary.csv"]
    from hvpoison.cli import default_out

    with pytest.raises(ValueError, match="name: expected a folder name that stays inside"):
        default_out("../x")


def test_a_changed_experiment_names_the_differing_keys(finished, tmp_path, capsys):
    import shutil

    out = tmp_path / "r"
    shutil.copytree(finished[0], out)
    with pytest.raises(ValueError) as e:
        run({**cfg(attack={"iters": 7}), "seed": 3}, out, progress=False)
    msg = str(e.value)
    assert "attack.iters = 6 there, 7 here" in msg and "seed = 1 there, 3 here" in msg
    assert "choose another folder (--out)" in msg and "--overwrite" in msg
    assert "fingerprint" not in msg


def test_progress_lines_name_the_experiment_and_give_an_eta(tmp_path, capsys):
    run(cfg(), tmp_path / "r", progress=True)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"v: 9 of 9 records to compute -> {tmp_path / 'r'}"
    lines = [ln for ln in err[1:] if ln.lstrip("\r").startswith("[")]
    assert len(lines) == 9 and all(" v r000-" in ln and "so far, ETA " in ln for ln in lines)
    assert lines[-1].rstrip().endswith("ETA 0s)")


def test_with_jobs_side_by_side_the_eta_waits_for_as_many_records():
    # the first `jobs` records finish together: a rate from the first would ignore the rest
    from hvpoison.experiments.runner import Progress

    p = Progress("v", start_done=3, jobs=2)
    assert p.eta(3, 10).endswith(" so far")
    assert p.eta(4, 10).endswith(" so far, ETA once 2 records are done")
    assert ", ETA " in p.eta(5, 10) and "once" not in p.eta(5, 10)
    assert p.eta(4, 4).endswith(", ETA 0s")              # the last record: none in flight
    assert "once" not in Progress("v", jobs=1).eta(1, 10)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le-bom", "utf-16-be-bom"])
def test_experiment_files_with_a_byte_order_mark_are_read(tmp_path, encoding):
    from hvpoison.experiments import Experiment

    text = 'name = "bom"\n[data]\ntask = "mnist-mini"\nn_tr = 100\n[attack]\nn_poison = 10\n'
    if encoding.endswith("-bom"):
        codec = encoding[:-4]
        raw = (b"\xff\xfe" if codec.endswith("le") else b"\xfe\xff") + text.encode(codec)
    else:
        raw = text.encode(encoding)
    path = tmp_path / "e.toml"
    path.write_bytes(raw)
    exp = Experiment.from_toml(path)
    assert exp.name == "bom" and exp.data.n_tr == 100


@pytest.mark.parametrize("raw, msg", [
    ('name = "x"\n'.encode("utf-16-le"), "UTF-16 without a byte-order mark?"),
    (b'name = "caf\xe9"\n', "not utf-8 at byte 11"),
])
def test_an_experiment_file_in_another_encoding_is_one_line_naming_it(tmp_path, capsys,
                                                                      raw, msg):
    path = tmp_path / "e.toml"
    path.write_bytes(raw)
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and msg in err[0], err
    assert not (tmp_path / "o").exists()
