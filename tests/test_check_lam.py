"""``check_lam``: which ``lam`` the MLP's ``strong`` scores its checked iterates at, with a
learned ``lam`` -- ``"final"`` by default in the API, the experiment files and the CLI;
``"own"`` (the recipe before 2026-12-06) has a fingerprint of its own, so neither recipe
resumes the other's records; every committed MLP strong run is made with ``"final"``."""
import json

import pytest

import hvpoison as hv
from hvpoison.experiments import Experiment, protocol, run
from hvpoison.methods import CHECK_LAM, as_method
from hvpoison.victims import GD

MLP = hv.MLP((3, 4, 1))


def test_the_default_is_final_everywhere_and_only_the_mlp_strong_takes_it():
    assert CHECK_LAM == "final" == Experiment().attack.check_lam
    assert as_method("strong", GD(), model=MLP).check_lam == "final"
    assert as_method("strong", GD(), model=MLP, check_lam="own").check_lam == "own"
    for method, model in (("strong", hv.LR(3)), ("alg2", MLP), ("flip", MLP)):
        with pytest.raises(ValueError, match="check_lam: expected None unless "
                                             "method='strong' on the MLP"):
            as_method(method, GD(), model=model, check_lam="own")


def _mlp_strong(**attack):
    cfg = protocol.mlp_config("cifar10", "l2", quick=True, method="strong")
    cfg["attack"].update(attack)
    return cfg


def test_fingerprints_own_is_the_recipe_before_the_key_final_differs():
    for task in protocol.TASKS:                   # every committed run: rerun 2026-12-06/07
        for penalty in ("l2", "l1"):
            cfg = protocol.mlp_config(task, penalty, method="strong")
            assert cfg["attack"]["check_lam"] == "final"
    assert "check_lam" not in protocol.mlp_config("mnist", "l2")["attack"]   # alg2
    before = _mlp_strong()
    del before["attack"]["check_lam"]
    own, final = (Experiment.from_dict(_mlp_strong(check_lam=c)).fingerprint()
                  for c in ("own", "final"))
    assert Experiment.from_dict(before).fingerprint() == final != own
    # the undefended records (no lam to learn) are shared by both recipes
    assert Experiment.from_dict(_mlp_strong(check_lam="own")).fingerprint(True) == \
        Experiment.from_dict(_mlp_strong(check_lam="final")).fingerprint(True)
    # where it plays no part, the key does not change the experiment
    for cfg in (protocol.mlp_config("mnist", "l2"), protocol.lr_config("mnist", "l2",
                                                                      method="strong")):
        a, b = (json.loads(json.dumps(cfg)) for _ in range(2))
        a["attack"]["check_lam"], b["attack"]["check_lam"] = "own", "final"
        assert Experiment.from_dict(a).fingerprint() == Experiment.from_dict(b).fingerprint()
    with pytest.raises(ValueError, match="attack.check_lam: expected 'own' or 'final', "
                                         "got 'last'"):
        Experiment.from_dict(_mlp_strong(check_lam="last"))


def test_the_runner_hands_the_key_to_the_mlp_strong_attack_only(tmp_path, monkeypatch):
    import sys

    attack_module = sys.modules["hvpoison.attack"]
    seen, real = [], attack_module.attack

    def spy(*a, **kw):
        seen.append((kw["method"], kw["check_lam"]))
        return real(*a, **kw)

    monkeypatch.setattr(attack_module, "attack", spy)
    base = {"name": "c", "seed": 2, "data": {"task": "synthetic2d", "n_tr": 30,
                                             "n_test": 200},
            "model": {"kind": "mlp", "hidden": [3]},
            "defense": {"settings": ["learned"], "lam_init": -3.0},
            "attack": {"n_poison": 3, "n_batches": 1, "iters": 4, "T": 15, "eta": 0.5,
                       "method": "strong", "check_lam": "own"},
            "test": {"T": 15, "eta": 0.5, "kuncheva_k": [1]}}
    run(base, tmp_path / "s", progress=False)
    base["attack"].update(method="alg2", check_lam="final")
    run(base, tmp_path / "a", progress=False)
    assert set(seen) == {("strong", "own"), ("alg2", None)}


def test_cli_check_lam(tmp_path, monkeypatch, capsys):
    from hvpoison.cli import attack_out, main

    assert attack_out("mnist", "mlp", "l2", "learned", "strong", "gd", None, 0,
                      check_lam="own").endswith("-strong-gd-checklam-own-seed0")
    assert "checklam" not in attack_out("mnist", "mlp", "l2", "learned", "strong", "gd",
                                        None, 0, check_lam="final")
    monkeypatch.chdir(tmp_path)
    assert main(["attack", "--check-lam", "own"]) == 2          # LR, alg2: one line
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--check-lam: expected no value unless --model mlp" in err[0]
