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
    ({"attack": {"method": "best"}}, "attack.method: expected one of ['alg2', 'strong', 'flip', 'all']"),
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
                       "--lam: expected no 'none' with --victim = 'exact'"),   # the flags
                      (["--victims", "exact", "--penalty", "l1"],                # typed
                       "--victims: expected 'exact' only with")):
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
        for cfg in fig.experiments() + (fig.experiments(attack="strong") if fig.strong
                                        else []):
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


def test_the_mlp_strong_attack_takes_the_task_step_as_alg2_does(monkeypatch):
    """protocol.attack_alpha: Alg. 2's normalised step scaled per task (4 on CIFAR-10) for
    alg2 and the MLP's strong, in the experiments and in ``hvpoison attack``; LR's strong
    (Adam) and flip take none; MNIST's MLP strong keeps its fingerprint (1.0 = default)."""
    import hvpoison.cli as cli
    from hvpoison.experiments import protocol

    for task in protocol.TASKS:
        strong = protocol.mlp_config(task, "l2", method="strong")["attack"]["alpha"]
        assert strong == protocol.mlp_config(task, "l2")["attack"]["alpha"] == \
            protocol.ALPHA[task]
    assert protocol.ALPHA["cifar10"] == 4.0
    assert "alpha" not in protocol.lr_config("cifar10", "l2", method="strong")["attack"]
    assert protocol.attack_alpha("cifar10", "flip", "mlp") is None
    assert protocol.attack_alpha("cifar10", "strong", "lr") is None
    mnist = protocol.mlp_config("mnist", "l2", method="strong")
    bare = json.loads(json.dumps(mnist))
    del bare["attack"]["alpha"]
    assert Experiment.from_dict(mnist).fingerprint() == Experiment.from_dict(bare).fingerprint()
    c10 = protocol.mlp_config("cifar10", "l2", method="strong")
    bare = json.loads(json.dumps(c10))
    del bare["attack"]["alpha"]
    assert Experiment.from_dict(c10).fingerprint() != Experiment.from_dict(bare).fingerprint()

    built = {}
    monkeypatch.setattr(cli, "_run_and_report",
                        lambda exp, out, args, title: built.update(exp=exp, title=title))
    for method, model, alpha in (("strong", "mlp", 4.0), ("alg2", "mlp", 4.0),
                                 ("strong", "lr", None)):
        assert main(["attack", "--task", "cifar10", "--model", model, "--method", method]) == 0
        assert built["exp"].attack.alpha == alpha, (method, model)
    assert main(["attack", "--task", "cifar10", "--model", "mlp", "--method", "strong",
                 "--alpha", "2"]) == 0
    assert built["exp"].attack.alpha == 2.0
