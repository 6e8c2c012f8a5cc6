"""``[attack] placement`` in the experiment layer and on the command line (issue 28): the
key is checked, an experiment with the default keeps its fingerprint, an "add" run appends
its points after the clean set (which its records never alter), is validated by the store
and resumes after an interruption to the same records."""
import json

import numpy as np
import pytest

from hvpoison.cli import main
from hvpoison.experiments import Experiment, run

BASE = {"name": "p", "repetitions": 1, "seed": 1,
        "data": {"task": "synthetic2d", "n_tr": 20, "n_test": 200},
        "defense": {"settings": ["large"], "lam_large": -1.0},
        "attack": {"n_poison": 4, "n_batches": 3, "iters": 5, "T": 40, "eta": 0.5,
                   "placement": "add"},
        "test": {"T": 40, "eta": 0.5, "kuncheva_k": [1], "victims": ["gd", "exact"]}}


def cfg(**attack):
    out = json.loads(json.dumps(BASE))
    out["attack"].update(attack)
    return out


def test_the_default_placement_keeps_the_fingerprint():
    assert Experiment().attack.placement == "replace"
    explicit = Experiment.from_dict({"attack": {"placement": "replace"}})
    assert explicit.fingerprint() == Experiment().fingerprint() == "9b812e9d60eda409"
    added = Experiment.from_dict({"attack": {"placement": "add"}})
    assert added.fingerprint() != Experiment().fingerprint()
    assert added.fingerprint(undefended=True) != Experiment().fingerprint(undefended=True)


@pytest.mark.parametrize("value,msg", [
    ("x", "attack.placement: expected 'replace' or 'add', got 'x'"),
    (3, "experiment.attack.placement: expected str, got 3"),
])
def test_bad_placement_is_named_in_one_line(value, msg):
    with pytest.raises(ValueError) as e:
        Experiment.from_dict(cfg(placement=value))
    assert str(e.value) == msg


def test_add_may_poison_more_points_than_clean_rows_replace_may_not():
    Experiment.from_dict(cfg(n_poison=10, n_batches=3))                 # 30 > n_tr = 20
    with pytest.raises(ValueError, match=r"attack.n_poison \* attack.n_batches: expected "
                                         r"at most data.n_tr = 20"):
        Experiment.from_dict(cfg(n_poison=10, n_batches=3, placement="replace"))


@pytest.mark.parametrize("method,victim", [("alg2", "gd"), ("strong", "exact"),
                                           ("flip", "gd")])
def test_an_add_experiment_appends_its_points_and_resumes(tmp_path, method, victim):
    exp = cfg(method=method, victim=victim)
    full = run(exp, tmp_path / "full", progress=False)
    recs = {}
    for b in range(4):
        recs[b] = json.loads((tmp_path / "full" / "records" / f"r000-large-b{b}.json")
                             .read_text())
        assert recs[b]["fraction"] == pytest.approx(4 * b / 20)
    for b in (1, 2, 3):
        z = np.load(tmp_path / "full" / "records" / f"r000-large-b{b}.npz")
        # batch b's points are rows n + 4(b-1) .. n + 4b - 1 of D_tr', after the clean set
        np.testing.assert_array_equal(z["rows"], np.arange(20 + 4 * (b - 1), 20 + 4 * b))
        assert z["Xp"].shape == (4, 2)
    # interrupted after two records; the re-run computes only the rest, to the same records
    calls = []

    def interrupt(done, total, key, rec):
        calls.append(key)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(exp, tmp_path / "part", progress=interrupt)
    rest = []
    again = run(exp, tmp_path / "part", progress=lambda *a: rest.append(a[2]))
    assert len(rest) == 2 and not set(rest) & set(calls)
    for b in (1, 2, 3):
        a = np.load(tmp_path / "full" / "records" / f"r000-large-b{b}.npz")
        c = np.load(tmp_path / "part" / "records" / f"r000-large-b{b}.npz")
        np.testing.assert_allclose(c["Xp"], a["Xp"], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(c["rows"], a["rows"])
    assert again["settings"]["large"]["test_error"] == full["settings"]["large"]["test_error"]


def test_cli_attack_placement_add_and_a_bad_value(tmp_path, capsys):
    out = tmp_path / "a"
    assert main(["attack", "--task", "mnist-mini", "--n-tr", "60", "--n-test", "100",
                 "--n-poison", "40", "--n-batches", "2", "--iters", "2", "-T", "10",
                 "--lam", "-3", "--placement", "add", "--out", str(out), "--quiet"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["settings"]["large"]["fraction"] == pytest.approx([0, 40 / 60, 80 / 60])
    assert np.load(out / "records" / "r000-large-b2.npz")["rows"].min() == 100
    capsys.readouterr()
    try:
        code = main(["attack", "--placement", "x", "--out", str(tmp_path / "x")])
    except SystemExit as e:
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--placement: invalid choice: 'x'" in err[-1]
