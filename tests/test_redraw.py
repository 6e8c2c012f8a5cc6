"""``hvpoison reproduce`` redraws a figure from the summaries in ``--out`` (the committed
``reproduce/runs/`` included) without datasets or runs, computes only a missing summary, runs
everything again under ``--recompute``, and never draws a summary of another experiment."""
import json
import shutil
from pathlib import Path

import pytest

import hvpoison.experiments
from hvpoison.cli import main
from hvpoison.figures import fig1

from test_data import SHARED, needs_shared

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "reproduce" / "runs"
FIG2 = ["lr-mnist-l2", "lr-fmnist-l2", "lr-cifar10-l2"]


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """No dataset anywhere: an empty $HVPOISON_DATA and cache, and no download."""
    for var in ("HVPOISON_DATA", "HVPOISON_CACHE"):
        (tmp_path / var).mkdir()
        monkeypatch.setenv(var, str(tmp_path / var))

    def no_download(*a, **k):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr("urllib.request.urlopen", no_download)


@pytest.fixture
def runs(tmp_path):
    """A copy of the committed ``reproduce/runs/`` (summaries, no records)."""
    return Path(shutil.copytree(RUNS, tmp_path / "runs"))


@pytest.fixture
def ran(monkeypatch):
    """The experiments run, by name, in order; a run returns the committed summary."""
    names = []

    def fake_run(exp, out, **kw):
        names.append(exp.name)
        return json.loads((RUNS / exp.name / "summary.json").read_text())

    monkeypatch.setattr(hvpoison.experiments, "run", fake_run)
    return names


def _no_run(monkeypatch):
    def refuse(exp, *a, **k):
        raise AssertionError(f"ran {exp.name}")

    monkeypatch.setattr(hvpoison.experiments, "run", refuse)
    monkeypatch.setattr(hvpoison.experiments.runner, "run", refuse)


def _sources(folder, fig):
    return json.loads((folder / f"{fig}.json").read_text())["sources"]


def test_committed_summaries_redraw_figs_2_6_8_without_data_or_runs(runs, no_data,
                                                                   monkeypatch, capsys):
    _no_run(monkeypatch)
    for f in ("fig2", "fig6", "fig8"):
        (runs / f"{f}.png").unlink()
    assert main(["reproduce", "fig2", "fig6", "fig8", "--out", str(runs)]) == 0
    err = capsys.readouterr().err
    for f in ("fig2", "fig6", "fig8"):
        assert (runs / f"{f}.png").stat().st_size > 20_000
        assert set(_sources(runs, f).values()) == {"redrawn"}
        assert f"{f}: redrawn from 3 summaries in {runs} (no experiment run; --recompute" in err
    assert not list(runs.glob("*/records"))
    drawn = json.loads((runs / "fig2.json").read_text())["summaries"]
    committed = json.loads((RUNS / "lr-mnist-l2" / "summary.json").read_text())
    assert drawn[0]["settings"]["learned"]["test_error"] == \
        committed["settings"]["learned"]["test_error"]


@pytest.mark.parametrize("args, written", [
    (["fig4"], ["fig4.png"]), (["fig3"], ["fig3-l2.png", "fig3-l1.png"]),
    (["fig2", "--attack", "strong"], ["fig2-strong.png"]),
    (["fig6", "--attack", "strong", "--tasks", "mnist", "fmnist"], ["fig6-strong.png"])])
def test_valsize_lam_and_strong_figures_redraw_too(runs, no_data, monkeypatch, args, written):
    _no_run(monkeypatch)
    for w in written:
        (runs / w).unlink()
    assert main(["reproduce", *args, "--out", str(runs)]) == 0
    assert all((runs / w).stat().st_size > 20_000 for w in written)


def test_a_missing_summary_is_computed_and_the_present_ones_redrawn(tmp_path, ran, capsys):
    for name in FIG2:
        shutil.copytree(RUNS / name, tmp_path / name)
    (tmp_path / "lr-cifar10-l2" / "summary.json").unlink()
    assert main(["reproduce", "fig2", "--out", str(tmp_path)]) == 0
    assert ran == ["lr-cifar10-l2"]
    assert _sources(tmp_path, "fig2") == {"lr-mnist-l2": "redrawn", "lr-fmnist-l2": "redrawn",
                                          "lr-cifar10-l2": "computed"}
    err = capsys.readouterr().err
    assert "fig2: computing lr-cifar10-l2 in" in err and "(no finished summary there)" in err
    assert (f"fig2: redrawn from 2 summaries in {tmp_path}; computed 1 missing experiment in "
            f"{tmp_path}: lr-cifar10-l2") in err


def test_recompute_runs_every_experiment_of_the_tasks_asked(tmp_path, ran, capsys):
    for name in FIG2:
        shutil.copytree(RUNS / name, tmp_path / name)
    assert main(["reproduce", "fig2", "--recompute", "--out", str(tmp_path)]) == 0
    assert ran == FIG2
    assert "fig2: ran 3 experiments again (--recompute" in capsys.readouterr().err
    ran.clear()
    assert main(["reproduce", "fig2", "--recompute", "--tasks", "fmnist", "--out",
                 str(tmp_path)]) == 0
    assert ran == ["lr-fmnist-l2"]
    assert _sources(tmp_path, "fig2") == {"lr-mnist-l2": "redrawn", "lr-fmnist-l2": "computed",
                                          "lr-cifar10-l2": "redrawn"}


def _foreign(folder):
    meta = json.loads((folder / "experiment.json").read_text())
    meta["config"]["attack"]["iters"] = 7
    meta["fingerprint"] = "another protocol"
    (folder / "experiment.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("extra", [[], ["--recompute"]])
def test_a_summary_of_another_experiment_is_refused_not_drawn(tmp_path, ran, capsys, extra):
    for name in FIG2:
        shutil.copytree(RUNS / name, tmp_path / name)
    _foreign(tmp_path / "lr-mnist-l2")
    assert main(["reproduce", "fig2", "--out", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"hvpoison reproduce: error: --out: expected {tmp_path}/lr-mnist-l2 "
                          "to hold the experiment lr-mnist-l2 of this figure (or nothing), "
                          "got another experiment: attack.iters = 7 there, 30 here;")
    assert ran == [] and not (tmp_path / "fig2.png").exists()
    # a task not asked for: left out, and said so
    assert main(["reproduce", "fig2", "--tasks", "fmnist", "cifar10", "--out", str(tmp_path),
                 *extra]) == 0
    how = "computed" if extra else "redrawn"
    assert _sources(tmp_path, "fig2") == {"lr-mnist-l2": "not drawn",
                                          "lr-fmnist-l2": how, "lr-cifar10-l2": how}
    drawn = json.loads((tmp_path / "fig2.json").read_text())["summaries"]
    assert [s["task"] for s in drawn] == ["fmnist", "cifar10"]
    assert ran == (["lr-fmnist-l2", "lr-cifar10-l2"] if extra else [])
    assert f"not drawn: {tmp_path}/lr-mnist-l2 (another experiment: attack.iters = 7 there, " \
        "30 here)" in capsys.readouterr().err


def test_fig1_is_redrawn_from_its_json_unless_asked_or_of_other_settings(runs, no_data,
                                                                         monkeypatch, capsys):
    computed = []
    monkeypatch.setattr(fig1, "compute", lambda quick: computed.append(quick) or
                        fig1.load(RUNS / "fig1.json"))
    (runs / "fig1.png").unlink()
    assert main(["reproduce", "fig1", "--out", str(runs)]) == 0
    assert computed == [] and (runs / "fig1.png").stat().st_size > 20_000
    assert f"fig1: redrawn from {runs}/fig1.json" in capsys.readouterr().err
    res = json.loads((runs / "fig1.json").read_text())
    res["config"]["grid"] = 41
    (runs / "fig1.json").write_text(json.dumps(res))
    assert main(["reproduce", "fig1", "--out", str(runs)]) == 2
    assert (f"--out: expected {runs}/fig1.json to hold Fig. 1 in full mode, got other "
            "settings (grid = 41 there, 61 here); pass --recompute") in capsys.readouterr().err
    assert main(["reproduce", "fig1", "--recompute", "--out", str(runs)]) == 0
    assert computed == [False]
    assert json.loads((runs / "fig1.json").read_text())["config"]["grid"] == 61


@needs_shared
def test_quick_runs_compute_once_then_redraw(tmp_path, monkeypatch, capsys):
    """End to end on the datasets: a missing quick summary is computed (only that one), a
    present one is redrawn without running, --recompute runs (resumes) it."""
    from hvpoison.experiments import runner

    real, ran = runner.run, []
    monkeypatch.setattr(hvpoison.experiments, "run",
                        lambda exp, *a, **k: ran.append(exp.name) or real(exp, *a, **k))
    args = ["reproduce", "fig2", "--quick", "--quiet", "--out", str(tmp_path), "--data-dir",
            str(SHARED)]
    assert main([*args, "--tasks", "mnist"]) == 0 and ran == ["lr-mnist-l2-quick"]
    assert main([*args, "--tasks", "mnist", "fmnist"]) == 0
    assert ran == ["lr-mnist-l2-quick", "lr-fmnist-l2-quick"]
    assert _sources(tmp_path, "fig2-quick") == {"lr-mnist-l2-quick": "redrawn",
                                                "lr-fmnist-l2-quick": "computed",
                                                "lr-cifar10-l2-quick": "not drawn"}
    def records():
        folder = tmp_path / "lr-mnist-l2-quick" / "records"
        return {p.name: p.stat().st_mtime_ns for p in folder.glob("r*.json")}

    before = records()
    assert main([*args, "--tasks", "mnist", "--recompute"]) == 0
    assert ran[2:] == ["lr-mnist-l2-quick"]
    assert records() == before and before          # resumed: every record kept, unwritten
    assert "(--recompute, finished records resumed)" in capsys.readouterr().err
