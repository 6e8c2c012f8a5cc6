"""``[test] starts``: the MLP's GD victim tested from several Xavier draws per record, its
test error their mean; one start (the default) is the record of before, fingerprint and
all."""
import json

import numpy as np
import pytest

from hvpoison.experiments import Experiment, run
from hvpoison.experiments.runner import start_seeds

MLP = {"name": "s", "repetitions": 1, "seed": 3,
       "data": {"task": "synthetic2d", "n_tr": 40, "n_test": 300},
       "model": {"kind": "mlp", "hidden": [4]},
       "defense": {"settings": ["large"], "lam_large": -2.0},
       "attack": {"n_poison": 4, "n_batches": 1, "iters": 3, "T": 20, "eta": 0.5},
       "test": {"T": 20, "eta": 0.5, "kuncheva_k": [1]}}


def with_starts(starts):
    d = json.loads(json.dumps(MLP))
    d["test"]["starts"] = starts
    return d


def test_one_start_is_the_experiment_of_before():
    assert Experiment.from_dict(with_starts(1)).fingerprint() == \
        Experiment.from_dict(MLP).fingerprint()
    assert Experiment.from_dict(with_starts(3)).fingerprint() != \
        Experiment.from_dict(MLP).fingerprint()
    assert Experiment().fingerprint() == "9b812e9d60eda409"      # as before the key


def test_start_seeds_begin_with_the_records_own_seed():
    assert start_seeds(7, 1) == [7]
    s = start_seeds(7, 4)
    assert s[0] == 7 and len(set(s)) == 4 and s[:3] == start_seeds(7, 3)


@pytest.mark.parametrize("starts,kind,msg", [
    (0, "mlp", "test.starts: expected a positive integer, got 0"),
    (2, "lr", "test.starts: expected 1 with model.kind = 'lr'"),
    (True, "mlp", "test.starts: expected int, got True"),
])
def test_bad_starts_are_named(starts, kind, msg):
    d = with_starts(starts)
    d["model"] = {"kind": kind} if kind == "lr" else d["model"]
    with pytest.raises(ValueError) as e:
        Experiment.from_dict(d)
    assert msg in str(e.value)


def test_the_record_is_the_mean_over_the_starts_and_its_first_is_the_single_start(tmp_path):
    run(MLP, tmp_path / "one", progress=False)
    run(with_starts(3), tmp_path / "three", progress=False)
    one = json.loads((tmp_path / "one" / "records" / "r000-large-b1.json").read_text())
    three = json.loads((tmp_path / "three" / "records" / "r000-large-b1.json").read_text())
    assert "test_errors" not in one and len(three["test_errors"]) == 3
    assert three["test_error"] == pytest.approx(np.mean(three["test_errors"]))
    assert three["test_errors"][0] == one["test_error"]       # the same points, first start
    assert len(set(three["test_errors"])) > 1                  # the draws differ
    assert np.array_equal(np.load(tmp_path / "one" / "records" / "r000-large-b1.npz")["Xp"],
                          np.load(tmp_path / "three" / "records" / "r000-large-b1.npz")["Xp"])


def test_cli_attack_test_starts(tmp_path, monkeypatch, capsys):
    from hvpoison.cli import attack_out, main

    assert attack_out("fmnist", "mlp", "l2", "large", "strong", "gd", None, 0, 3).endswith(
        "attack-fmnist-mlp-l2-large-strong-gd-starts3-seed0")
    assert "starts" not in attack_out("fmnist", "mlp", "l2", "large", "strong", "gd", None, 0)
    assert main(["attack", "--task", "synthetic2d", "--model", "mlp", "--hidden", "4",
                 "--lam", "large", "--n-tr", "40", "--n-test", "300", "--n-poison", "4",
                 "--n-batches", "1", "--iters", "2", "-T", "20", "--eta", "0.5",
                 "--test-starts", "2", "--out", str(tmp_path / "a"), "--quiet"]) == 0
    rec = json.loads((tmp_path / "a" / "records" / "r000-large-b1.json").read_text())
    assert len(rec["test_errors"]) == 2
    monkeypatch.chdir(tmp_path)
    assert main(["attack", "--test-starts", "2"]) == 2           # LR: one line, named flag
    err = capsys.readouterr().err.strip().splitlines()
    assert "--test-starts: expected 1 with --model = 'lr'" in err[-1]
