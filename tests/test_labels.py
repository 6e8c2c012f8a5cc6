"""Every number a user sees says what produced it (issue 27): settings by value, the flags
typed in errors, method / victim / task / penalty in titles, CSV columns and folder names."""
import csv
import json
import os

import pytest

from hvpoison import plots
from hvpoison.cli import main

TINY = ["--n-tr", "100", "--n-test", "200", "--n-poison", "10", "--n-batches", "1",
        "--iters", "2", "-T", "20", "--quiet"]


@pytest.fixture(scope="module")
def fixed(tmp_path_factory):
    """``hvpoison attack --lam -6.9`` run in a fresh working directory, default --out."""
    cwd = tmp_path_factory.mktemp("cwd")
    old = os.getcwd()
    os.chdir(cwd)
    try:
        assert main(["attack", "--lam", "-6.9", *TINY]) == 0
    finally:
        os.chdir(old)
    return cwd


def test_a_fixed_lam_is_labelled_by_its_value(fixed, capsys):
    out = fixed / "results" / "attack-mnist-mini-lr-l2-lam-6.9-alg2-gd-seed0"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["lam_large"] == -6.9
    from hvpoison.experiments import format_table

    text = format_table(summary)
    assert "λ = -6.9" in text and "large" not in text
    assert "alg2" in text and "gd victim" in text and "mnist-mini" in text and "L2" in text


def test_summary_csv_names_method_victim_task_and_penalty(fixed):
    out = fixed / "results" / "attack-mnist-mini-lr-l2-lam-6.9-alg2-gd-seed0"
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert rows and {r["label"] for r in rows} == {"λ = -6.9"}
    assert {(r["task"], r["model"], r["penalty"], r["method"], r["attack_victim"],
             r["test_victim"]) for r in rows} == {("mnist-mini", "lr", "l2", "alg2", "gd",
                                                   "gd")}


def test_every_picture_title_names_method_victim_task_and_penalty(fixed, monkeypatch):
    out = fixed / "results" / "attack-mnist-mini-lr-l2-lam-6.9-alg2-gd-seed0"
    titles = []

    def keep(fig, path, formats=("png",), dpi=100):
        titles.append(fig._suptitle.get_text() if fig._suptitle else
                      " ".join(a.get_title() for a in fig.axes))
        titles.extend(t.get_label() for a in fig.axes for t in a.get_legend_handles_labels()[0])
        return []

    monkeypatch.setattr(plots, "save", keep)
    plots.plot_summary(json.loads((out / "summary.json").read_text()), out / "s")
    plots.plot_poison(out, out / "p")
    assert len(titles) >= 2
    for t in (titles[0], [t for t in titles if "poisoning points" in t][0]):
        for word in ("alg2", "gd victim", "mnist-mini", "L2"):
            assert word in t, (word, t)
    assert any("λ = -6.9" in t for t in titles)


def test_the_default_attack_folder_names_every_natural_choice(fixed, monkeypatch, capsys):
    monkeypatch.chdir(fixed)
    assert main(["attack", "--lam", "-6.9", "--seed", "1", *TINY]) == 0
    names = sorted(os.listdir(fixed / "results"))
    assert names == ["attack-mnist-mini-lr-l2-lam-6.9-alg2-gd-seed0",
                     "attack-mnist-mini-lr-l2-lam-6.9-alg2-gd-seed1"]


def test_attack_errors_name_the_flags_typed(tmp_path, capsys):
    assert main(["attack", "--lam", "3", "--out", str(tmp_path / "a"), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hvpoison attack: error: --lam: expected") and "--eta" in err
    assert "defense." not in err and "attack.eta" not in err and "lam = 3" in err
    assert len(err.splitlines()) == 1
    assert main(["attack", "--n-poison", "60", "--n-batches", "2", "--out",
                 str(tmp_path / "b"), "--n-tr", "100", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--n-poison * --n-batches: expected at most --n-tr = 100" in err


def test_method_all_reports_the_worst_case_and_its_method(tmp_path):
    from hvpoison.experiments import format_table, run
    from test_experiment_victims import cfg

    s = run(cfg(attack={"method": "all"}), tmp_path, progress=False)
    each = {m: json.loads((tmp_path / m / "summary.json").read_text())
            for m in ("alg2", "strong", "flip")}
    for setting, t in s["settings"].items():
        for i, m in enumerate(t["worst_method"]):
            errs = {k: e["settings"][setting]["test_error"]["mean"][i][0]
                    for k, e in each.items()}
            assert t["test_error"]["mean"][i][0] == max(errs.values()) == errs[m]
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert {r["method"] for r in rows} <= {"alg2", "strong", "flip"}
    assert "worst case over alg2, strong, flip" in format_table(s)


def test_help_describes_strong_honestly_and_offers_all(capsys):
    with pytest.raises(SystemExit):
        main(["attack", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "all: every method, and the worst case" in out
    assert "strongest recipe measured per victim and model (not the strongest in every" in out
