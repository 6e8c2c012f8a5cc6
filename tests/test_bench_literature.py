"""bench/bench_literature.py's attacker-side rules: which validation rows each rule takes,
and that the blind choice reads only the attacker's criterion, never the test error."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
import bench_literature as bl  # noqa: E402


@pytest.fixture
def clean():
    rng = np.random.default_rng(0)
    X = rng.random((200, 5))
    w = np.array([1.0, -1.0, 0.5, 0.0, 0.0, -0.2])          # weights then bias
    y = (X @ w[:-1] + w[-1] + 0.3 * rng.standard_normal(200) > 0).astype(float)
    return X, y, w


def test_margin_rules_take_the_correct_rows_nearest_the_boundary(clean):
    X, y, w = clean
    z = X @ w[:-1] + w[-1]
    margin = np.where(y == 1, z, -z)
    for rule, pool in (("margin:30", margin > 0), ("margin7:30", (margin > 0) & (y == 1))):
        rows = bl.attacker_val(rule, None, X, y, w)
        assert len(rows) == 30 and np.all(pool[rows])
        assert margin[rows].max() <= margin[pool & ~np.isin(np.arange(200), rows)].min()


def test_other_rules(clean):
    X, y, w = clean
    assert len(bl.attacker_val("random", None, X, y, w, m=50)) == 50
    assert np.array_equal(bl.attacker_val("all", None, X, y, w), np.arange(200))
    assert np.all(y[bl.attacker_val("sevens", None, X, y, w, m=20)] == 1)
    assert np.all(y[bl.attacker_val("ones", None, X, y, w, m=20)] == 0)
    with pytest.raises(ValueError, match="--val: expected one of"):
        bl.attacker_val("nearest", None, X, y, w)


def test_blind_choice_follows_the_attackers_criterion_not_the_test_error():
    r = {"clean": {},
         "random/3/strong": {"eps": 3, "attacker_error": 0.020, "test_error": 0.050},
         "margin/3/strong": {"eps": 3, "attacker_error": 0.030, "test_error": 0.040},
         "margin/3/flip": {"eps": 3, "attacker_error": 0.090, "test_error": 0.010},
         "all/5/strong": {"eps": 5, "attacker_error": 0.500, "test_error": 0.500},
         "ones/3/strong": {"eps": 3, "test_error": 0.900}}          # no criterion: not a candidate
    assert bl.selected(r, 3, "strong") == "margin/3/strong"
    assert bl.selected(r, 3, "flip") == "margin/3/flip"
    assert bl.selected(r, 1, "strong") is None


def test_attack_names():
    assert [bl.attack_name(a) for a in ("flip", "strong", "strong:300")] == \
        ["flip", "strong", "strong:300"]
    for bad in ("alg2", "strong:0", "strong:x", "flip:3"):
        with pytest.raises(Exception, match="expected flip, strong or strong:K"):
            bl.attack_name(bad)


def test_blind_choice_by_the_cross_validated_criterion_skips_runs_without_it():
    r = {"clean": {},
         "margin/3/strong": {"eps": 3, "attacker_error": 0.030, "attacker_cv_error": 0.040,
                             "test_error": 0.010},
         "margin7/3/strong": {"eps": 3, "attacker_error": 0.031, "attacker_cv_error": 0.039,
                              "test_error": 0.090},
         "all/3/strong": {"eps": 3, "attacker_error": 0.050, "test_error": 0.5}}   # no cv
    assert bl.selected(r, 3, "strong", "train") == "all/3/strong"
    assert bl.selected(r, 3, "strong", "cv") == "margin/3/strong"
    with pytest.raises(KeyError):
        bl.selected(r, 3, "strong", "test")


def test_cv_error_holds_each_clean_row_out_once_and_uses_the_points(clean):
    import hvpoison as hv
    X, y, _ = clean
    obj = hv.Objective(hv.LR(X.shape[1]), "l2")
    e0 = bl.cv_error(obj, X, y, X[:0], y[:0])
    # the same split by hand: two seeded halves, each scored by a fit on the other
    parts = np.array_split(np.random.default_rng(0).permutation(len(X)), 2)
    wrong = 0
    for a, b in ((parts[0], parts[1]), (parts[1], parts[0])):
        w = bl.Exact().fit(obj, X[a], y[a], bl.LAM)
        wrong += (obj.model.predict(w, X[b]) != y[b]).sum()
    assert e0 == pytest.approx(wrong / len(X))
    # points that copy every row with its label flipped, many times over, wreck the victim
    Xp, yp = np.repeat(X, 5, axis=0), np.repeat(1 - y, 5)
    assert bl.cv_error(obj, X, y, Xp, yp) > e0 + 0.2


def test_paired_se_is_zero_when_nothing_changes_and_counts_changed_rows(clean):
    import hvpoison as hv
    X, y, _ = clean
    model = hv.LR(X.shape[1])
    w = bl.Exact().fit(hv.Objective(model, "l2"), X, y, bl.LAM)
    assert bl.paired_se_pp(model, w, w, X, y) == 0.0
    flipped = -w                                   # every prediction turned round
    d = np.where(model.predict(w, X) != y, -1.0, 1.0)
    assert bl.paired_se_pp(model, flipped, w, X, y) == pytest.approx(
        100 * d.std(ddof=1) / np.sqrt(len(X)))
