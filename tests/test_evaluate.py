import numpy as np
import pytest

import hvpoison as hv


def test_kuncheva_index_known_values():
    a = np.array([5.0, 4, 3, 2, 1, 0])
    assert hv.kuncheva(a, a, 2) == pytest.approx(1.0)
    b = a[::-1].copy()                              # top-2 {0,1} vs {5,4}: r = 0
    assert hv.kuncheva(a, b, 2) == pytest.approx((0 * 6 - 4) / (2 * 4))
    c = np.array([5.0, 0, 4, 0, 0, 0])              # top-2 {0,2}: r = 1
    assert hv.kuncheva(a, -c, 2) == pytest.approx((1 * 6 - 4) / (2 * 4))


@pytest.mark.parametrize("k", [0, 6, 2.5])
def test_kuncheva_rejects_bad_k(k):
    with pytest.raises(ValueError, match=r"k: expected an integer in \(0, 6\)"):
        hv.kuncheva(np.ones(6), np.ones(6), k)


def test_evaluate_reports_error_norms_and_kuncheva():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 5))
    y = (X[:, 0] > 0).astype(float)
    obj = hv.Objective(hv.LR(5), "l2")
    clean = hv.evaluate(obj, X, y, X, y, -3.0, T=200, eta=0.5)
    assert clean["test_error"] < 0.1
    assert clean["w_norm2"].shape == (1,)
    res = hv.evaluate(obj, X, y, X, y, -3.0, T=200, eta=0.5, w_clean=clean["w"], k=2)
    assert res["kuncheva"] == pytest.approx(1.0)
    mlp = hv.Objective(hv.MLP((5, 3, 1)), "l2")
    assert hv.evaluate(mlp, X, y, X, y, -3.0, T=20)["w_norm2"].shape == (2,)


def test_lam_cv_prefers_weak_regularisation_on_clean_separable_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] > 0).astype(float)
    obj = hv.Objective(hv.LR(3), "l2")
    best, losses = hv.lam_cv(obj, X, y, grid=[-6.0, -2.0, 1.0], K=3, T=200, eta=0.5)
    assert best in (-6.0, -2.0) and losses[2] > losses[0]
    # lam = 2 diverges with eta = 0.5 (e^2 eta > 2): no candidate, its loss is inf
    best, losses = hv.lam_cv(obj, X, y, grid=[-6.0, 2.0], K=3, T=200, eta=0.5)
    assert best == -6.0 and np.isinf(losses[1])
    with pytest.raises(hv.DivergenceError, match="every lam of the grid"):
        hv.lam_cv(obj, X, y, grid=[2.0, 3.0], K=3, T=200, eta=0.5)
    with pytest.raises(ValueError, match="K: expected an integer in"):
        hv.lam_cv(obj, X, y, K=1)


def test_evaluation_bad_input():
    X, y = np.ones((6, 3)), np.array([0, 1, 0, 1, 0, 1.0])
    with pytest.raises(ValueError, match="obj: expected an Objective with a penalty"):
        hv.lam_cv(hv.Objective(hv.LR(3)), X, y)
    with pytest.raises(ValueError, match="b: expected 6 feature weights like a"):
        hv.kuncheva(np.ones(6), np.ones(5), 2)
    with pytest.raises(ValueError, match=r"Xte: expected shape \(n, 3\)"):
        hv.evaluate(hv.Objective(hv.LR(3), "l2"), X, y, np.ones((2, 4)), y[:2], 0.0, T=5)


def test_attack_evaluate_and_train_share_one_default_victim():
    import inspect

    from hvpoison.victims import DEFAULT_ETA, DEFAULT_T

    for f in (hv.attack, hv.evaluate, hv.train, hv.lam_cv):
        p = inspect.signature(f).parameters
        assert (p["T"].default, p["eta"].default) == (DEFAULT_T, DEFAULT_ETA) == (200, 0.1), f
        assert "200" in f.__doc__, f"{f.__name__}'s docstring states the default victim"
    assert (hv.GD().T, hv.GD().eta) == (DEFAULT_T, DEFAULT_ETA)


def test_evaluate_with_defaults_tests_the_victim_the_attack_anticipated():
    X, y = np.ones((40, 2)), np.arange(40) % 2 * 1.0
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2)) + np.where(y[:, None] > 0, 1.0, -1.0)
    obj = hv.Objective(hv.LR(2), "l2")
    b = hv.attack(obj, X, y, X[:10], y[:10], n_poison=4, n_batches=1, iters=2, lam=-2.0,
                  seed=0)[-1]
    assert b.victim == hv.GD(200, 0.1) and b.method == "alg2"
    by_default = hv.evaluate(obj, b.X, b.y, X, y, b.lam)
    by_batch = hv.evaluate(obj, b.X, b.y, X, y, b.lam, victim=b.victim)
    assert np.array_equal(by_default["w"], by_batch["w"])
    w = hv.train(obj, b.X, b.y, b.lam)
    assert np.array_equal(w, by_batch["w"])


@pytest.mark.parametrize("yte, msg", [
    (np.array([-1.0, 1.0] * 3), r"yte: expected labels in \{0, 1\}, got values such as \[-1"),
    (np.array([0.0, 1.0] * 3)[:, None], r"yte: expected shape \(6,\)"),
    (np.array([0.0, 1.0] * 2), r"yte: expected shape \(6,\)"),
])
def test_evaluate_refuses_bad_test_labels(yte, msg):
    X, y = np.ones((6, 3)), np.array([0, 1, 0, 1, 0, 1.0])
    with pytest.raises(ValueError, match=msg):
        hv.evaluate(hv.Objective(hv.LR(3), "l2"), X, y, X, yte, 0.0, T=5)
