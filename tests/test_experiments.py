"""The experiment runner: configuration checks, records, resume after an interruption
(in-process and by killing the process), local processes and a Dask LocalCluster giving the
same results as the serial run, aggregates and plots."""
import json
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from hvpoison.experiments import Experiment, Store, format_table, run

SMALL = {"name": "small", "repetitions": 2, "seed": 5,
         "data": {"task": "mnist-mini", "n_tr": 120, "n_test": 300},
         "defense": {"settings": ["none", "cv", "learned"], "cv_grid": [-6.0, -2.0],
                     "cv_folds": 2},
         "attack": {"n_poison": 12, "n_batches": 2, "iters": 4, "T": 30},
         "test": {"T": 30, "kuncheva_k": [20, 50]}}


def table(summary):
    """The numbers of a summary (without timings) for comparisons."""
    return {s: {m: v for m, v in t.items()} for s, t in summary["settings"].items()}


def assert_same(a, b):
    ta, tb = table(a), table(b)
    assert ta.keys() == tb.keys()
    for s in ta:
        assert ta[s].keys() == tb[s].keys()
        for m in ta[s]:
            if m == "fraction":
                assert ta[s][m] == tb[s][m]
            else:
                np.testing.assert_allclose(ta[s][m]["mean"], tb[s][m]["mean"], rtol=1e-9,
                                           atol=1e-12, err_msg=f"{s} {m}")


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    return out, run(SMALL, out, progress=False)


def test_config_round_trip_and_errors(tmp_path):
    exp = Experiment.from_dict(SMALL)
    assert Experiment.from_dict(exp.to_dict()) == exp
    p = tmp_path / "e.toml"
    p.write_text(textwrap.dedent("""
        name = "x"
        repetitions = 2
        [data]
        task = "mnist-mini"
        n_tr = 100
        [attack]
        eta = 1
        n_poison = 10
    """))
    e = Experiment.from_toml(p)
    assert e.data.n_tr == 100 and e.attack.eta == 1.0 and e.repetitions == 2
    assert e.fingerprint() != Experiment().fingerprint()
    for bad, msg in [({"atack": {}}, "experiment.atack: unknown key"),
                     ({"attack": {"itres": 3}}, "experiment.attack.itres: unknown key"),
                     ({"attack": {"iters": "3"}}, "experiment.attack.iters: expected int"),
                     ({"data": {"task": "mnist08"}}, "data.task: expected one of"),
                     ({"defense": {"settings": ["learned_per_layer"]}},
                      "'learned_per_layer' only with model.kind = 'mlp'"),
                     ({"defense": {"settings": ["huge"]}}, "defense.settings: expected entries"),
                     ({"attack": {"n_poison": 400, "n_batches": 5}},
                      "attack.n_poison \\* attack.n_batches: expected at most data.n_tr"),
                     ({"attack": {"eta": -1}}, "attack.eta: expected a positive")]:
        with pytest.raises(ValueError, match=msg):
            Experiment.from_dict(bad)
    p.write_text("name = ")
    with pytest.raises(ValueError, match="not valid TOML"):
        Experiment.from_toml(p)
    with pytest.raises(ValueError, match="EXPERIMENT: expected a TOML file"):
        Experiment.from_toml(tmp_path / "missing.toml")


def test_the_floor_is_label_flipping_on_the_settings_with_a_fixed_lam():
    exp = Experiment.from_dict({**SMALL, "defense": {**SMALL["defense"],
                                                     "settings": ["learned", "none", "large"]},
                                "attack": {**SMALL["attack"], "alpha": 2.0}})
    floor = exp.floor()
    assert floor.name == "small-floor" and floor.defense.settings == ["none", "large"]
    assert floor.attack.method == "flip" and floor.attack.alpha is None
    same = floor.to_dict()
    same["attack"].update(method="alg2", alpha=2.0)
    same["defense"]["settings"] = exp.defense.settings
    assert same == {**exp.to_dict(), "name": "small-floor"}   # nothing else changes
    for attack, settings in [("flip", ["none"]), ("all", ["none"]), ("alg2", ["learned", "cv"])]:
        e = Experiment.from_dict({**SMALL, "defense": {**SMALL["defense"], "settings": settings},
                                  "attack": {**SMALL["attack"], "method": attack}})
        assert e.floor() is None, (attack, settings)
    mlp = Experiment.from_dict({"model": {"kind": "mlp"}, "attack": {"method": "strong",
                                                                    "check_lam": "own"},
                                "defense": {"settings": ["none", "learned_per_layer"]}})
    assert mlp.floor().defense.settings == ["none"] and mlp.floor().attack.method == "flip"


def test_serial_run_writes_records_summary_and_metadata(serial):
    out, summary = serial
    assert summary["complete"] and summary["records"] == 2 * 3 * 3
    meta = json.loads((out / "experiment.json").read_text())
    assert meta["config"]["seed"] == 5 and "numpy" in meta["versions"]
    recs = Store(out).all_records()
    assert len(recs) == 18
    r = next(r for r in recs if r["setting"] == "learned" and r["b"] == 2)
    assert r["fraction"] == pytest.approx(0.2) and isinstance(r["lam"], float)
    assert set(r["seconds"]) == {"attack", "test"} and set(r["kuncheva"]) == {"20", "50"}
    z = Store(out).load_arrays("r000-learned-b2")
    assert z["Xp"].shape == (12, 784) and z["rows"].shape == (12,)
    assert 0 <= z["Xp"].min() and z["Xp"].max() <= 1                 # the feature box
    cv = Store(out).load("r000-cv")
    assert cv["lam_cv"] in (-6.0, -2.0)
    assert all(r["lam"] == cv["lam_cv"] for r in recs if r["setting"] == "cv" and r["rep"] == 0)
    st = summary["settings"]
    assert list(st) == ["none", "cv", "learned"]
    assert st["none"]["fraction"] == pytest.approx([0, 0.1, 0.2])
    assert st["none"]["test_error"]["n"] == [2, 2, 2]
    assert st["none"]["kuncheva@20"]["mean"][0] == [1.0]           # fraction 0 is the reference
    vl = [r["outer_final"] for r in recs if r["setting"] == "learned" and r["b"] == 2]
    assert st["learned"]["val_loss"]["mean"][2] == pytest.approx([sum(vl) / len(vl)])
    csv_lines = (out / "summary.csv").read_text().splitlines()
    assert csv_lines[0].startswith("setting,fraction,metric,component,mean,std,n,label,task,")
    assert any(ln.startswith("learned,0.2000,lam,0,") for ln in csv_lines)
    assert "test error, mean ± std" in format_table(summary)


def test_rerun_resumes_and_computes_nothing(serial):
    out, summary = serial
    seen = []
    again = run(SMALL, out, progress=lambda *a: seen.append(a))
    assert seen == [] and again["settings"] == summary["settings"]


def test_interrupted_run_resumes_to_the_same_table(serial, tmp_path):
    """Ctrl-C after 5 records (in the progress callback) keeps them; the re-run computes
    only the rest and ends with the uninterrupted table."""
    calls = []

    def interrupt(done, total, key, rec):
        calls.append(key)
        if len(calls) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(SMALL, tmp_path, progress=interrupt)
    assert len(list((tmp_path / "records").glob("*.json"))) == 5
    partial = json.loads((tmp_path / "summary.json").read_text())
    assert not partial["complete"]
    rest = []
    final = run(SMALL, tmp_path, progress=lambda *a: rest.append(a[2]))
    assert len(rest) == 2 * 3 * 3 + 2 - 5 and not set(rest) & set(calls)
    assert_same(final, serial[1])


def test_killed_process_resumes_to_the_same_records(serial, tmp_path):
    """SIGKILL of `hvpoison run` three times, at random moments (a seeded random number of
    records, plus a random delay inside the next one): only whole records remain, and the
    resumed run ends with the uninterrupted run's records (to rounding)."""
    cfg = tmp_path / "small.toml"
    cfg.write_text(_toml(SMALL))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "hvpoison", "run", str(cfg), "--out", str(out), "--quiet"]
    rng = np.random.default_rng(7)

    def n_records():
        return len(list((out / "records").glob("*.json"))) if (out / "records").is_dir() else 0

    kept = []
    for _ in range(3):
        target = n_records() + int(rng.integers(2, 5))
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while time.time() < deadline and n_records() < target and proc.poll() is None:
            time.sleep(0.005)
        time.sleep(float(rng.uniform(0, 0.05)))               # somewhere in the next record
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kept.append(n_records())
    assert kept == sorted(kept) and 6 <= kept[-1] < 20, f"not killed mid-run: {kept}"
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not list((out / "records").glob(".*.tmp"))      # a half-written file is removed
    assert_same(json.loads((out / "summary.json").read_text()), serial[1])
    assert_same_records(serial[0], out)


def test_parallel_processes_equal_the_serial_run(serial, tmp_path):
    assert_same(run(SMALL, tmp_path, n_jobs=2, progress=False), serial[1])


def records_of(folder):
    """Every record (timings and provenance dropped) and its arrays, for exact comparison."""
    store = Store(folder)
    out = {}
    for p in sorted((folder / "records").glob("r*.json")):
        rec = {k: v for k, v in json.loads(p.read_text()).items()
               if k not in ("seconds", "copied_from")}
        arrays = store.load_arrays(p.stem) if p.with_suffix(".npz").is_file() else {}
        out[p.stem] = (rec, {k: np.asarray(arrays[k]) for k in arrays})
    return out


def same_to_rounding(a, b, where):
    """``a == b`` for JSON values, floats within a relative 1e-12 or 1e-15 (the last bit of
    a numpy sum may depend on its array's memory alignment); ints, strings, None exactly."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), where
        assert a == pytest.approx(b, rel=1e-12, abs=1e-15), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            same_to_rounding(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same_to_rounding(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def assert_same_records(a, b):
    """Folders ``a`` and ``b`` hold the same 20 records: every field and array equal to
    rounding, the poisoned rows, labels and batch indices exactly."""
    ra, rb = records_of(a), records_of(b)
    assert ra.keys() == rb.keys() and len(ra) == 20
    for k in ra:
        same_to_rounding(ra[k][0], rb[k][0], k)
        assert ra[k][1].keys() == rb[k][1].keys(), k
        for name, x in ra[k][1].items():
            if x.dtype.kind == "f" and name not in ("yp",):
                np.testing.assert_allclose(x, rb[k][1][name], rtol=1e-12, atol=1e-15,
                                           err_msg=k)      # features in [0, 1]
            else:
                np.testing.assert_array_equal(x, rb[k][1][name], err_msg=k)


def test_parallel_processes_give_the_same_records(serial, tmp_path):
    """Every unit computes with one BLAS thread in every executor (runner.one_blas_thread),
    so --jobs 2 and the serial run agree to rounding, record by record and array by array
    (before, BLAS with two threads in the serial run changed the order of its sums)."""
    run(SMALL, tmp_path, n_jobs=2, progress=False)
    assert_same_records(serial[0], tmp_path)


def test_units_compute_with_one_blas_thread():
    from threadpoolctl import threadpool_info

    from hvpoison.experiments.runner import one_blas_thread

    with one_blas_thread():
        blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
    assert blas and all(p["num_threads"] == 1 for p in blas)


@pytest.mark.slow
def test_dask_survives_the_loss_of_the_worker_holding_the_data(serial, tmp_path):
    """Two worker processes; after the 4th record every worker holding the data (the
    repetitions' splits) is SIGKILLed by its PID. A split is a task's result (not scattered
    data), so the scheduler computes it again; the run ends with the serial run's records
    (to rounding)."""
    import os

    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    killed = []
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        def kill_the_holder(done, total, key, rec):
            if done == 4 and not killed:
                who = {k: ws for k, ws in client.who_has().items()    # the data, not results
                       if not str(k).startswith(("run_unit", "run_cv")) and ws}
                holders = sorted({a for ws in who.values() for a in ws})
                pids = client.run(os.getpid)
                for addr in holders:          # every copy of the data goes (tasks that
                    os.kill(pids[addr], signal.SIGKILL)      # needed it copied it over)
                    killed.append(addr)

        run(SMALL, tmp_path, client=client, progress=kill_the_holder)
    assert killed, "no worker was killed"
    assert_same_records(serial[0], tmp_path)


def test_dask_local_cluster_equals_the_serial_run(serial, tmp_path):
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        summary = run(SMALL, tmp_path, client=client, progress=False)
    assert_same(summary, serial[1])


def test_a_different_experiment_in_the_same_folder_is_refused(serial):
    out, _ = serial
    with pytest.raises(ValueError, match=r"holds \d+ records of a different experiment "
                       r"\(seed = 5 there, 6 here\); choose another folder \(--out\), run "):
        run({**SMALL, "seed": 6}, out, progress=False)


def test_undefended_records_are_copied_from_a_run_with_another_penalty(serial, tmp_path):
    out, _ = serial
    defense = {**SMALL["defense"], "penalty": "l1", "lam_large": -3.0}
    l1 = {**SMALL, "name": "small-l1", "defense": {**defense, "settings": ["none", "learned"]}}
    computed = []
    run(l1, tmp_path / "l1", progress=lambda *a: computed.append(a[2]),
        reuse=[tmp_path / "no-such-folder", out, tmp_path / "l1"])
    keys = [f"r{r:03d}-none-b{b}" for r in range(2) for b in range(3)]
    assert computed and not any("-none-" in k for k in computed)
    copies = Store(tmp_path / "l1")
    assert all(copies.load(k)["copied_from"] == str(out) for k in keys)
    assert copies.load_arrays("r001-none-b2")["Xp"].shape == (12, 784)
    summary = json.loads((tmp_path / "l1" / "summary.json").read_text())   # time: own, copied
    assert summary["seconds_copied"] == pytest.approx(sum(
        sum(copies.load(k)["seconds"].values()) for k in keys)) and \
        0 < summary["seconds_copied"] < summary["seconds"]

    # the premise: the undefended victim does not read [defense], so computing them under
    # L1 gives the very same records
    fresh = Store(tmp_path / "fresh")
    run({**l1, "defense": {**defense, "settings": ["none"]}}, fresh.out, progress=False)
    for k in keys:
        a, b = fresh.load(k), copies.load(k)
        for r in (a, b):
            r.pop("seconds")
            r.pop("fingerprint")            # each folder's own experiment
        assert b.pop("copied_from") and b.pop("copied_fingerprint") and a == b, k
        np.testing.assert_array_equal(fresh.load_arrays(k)["Xp"], copies.load_arrays(k)["Xp"])

    # a different attack is another experiment: nothing copied
    other = {**l1, "attack": {**SMALL["attack"], "iters": 3}}
    computed.clear()
    run(other, tmp_path / "other", progress=lambda *a: computed.append(a[2]), reuse=[out])
    assert sum("-none-" in k for k in computed) == len(keys)


def test_plot_writes_png_and_pdf(serial, tmp_path):
    pytest.importorskip("matplotlib")
    from hvpoison.plots import plot_summary

    paths = plot_summary(serial[0], tmp_path / "fig")
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert all(p.stat().st_size > 10_000 for p in paths)
    with pytest.raises(ValueError, match="RESULTS: expected a results folder"):
        plot_summary(tmp_path / "nothing", tmp_path / "fig")


def _toml(d, prefix=""):
    lines, tables = [], []
    for k, v in d.items():
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {json.dumps(v)}")
    for k, v in tables:
        lines.append(f"\n[{k}]")
        lines.extend(f"{kk} = {json.dumps(vv)}" for kk, vv in v.items())
    return "\n".join(lines) + "\n"
