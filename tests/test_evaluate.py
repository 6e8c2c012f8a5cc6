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
    with pytest.raises(ValueError, match=r"X: expected shape \(n, 3\)"):
        hv.evaluate(hv.Objective(hv.LR(3), "l2"), X, y, np.ones((2, 4)), y[:2], 0.0, T=5)
