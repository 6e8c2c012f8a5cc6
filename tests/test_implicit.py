"""Implicit hypergradient (Eq. 4): CG equals the dense solve, both equal finite differences
of l_val(w*(X_p, lam)) with w* re-solved tightly."""
import warnings

import numpy as np
import pytest

import hvpoison as hv
from helpers import rel_err


def _problem(model, n=40, m=20, seed=0):
    rng = np.random.default_rng(seed)
    d = model.n_features
    X = rng.normal(size=(n, d))
    y = (X[:, 0] + 0.7 * rng.normal(size=n) > 0).astype(float)
    Xv = rng.normal(size=(m, d))
    yv = (Xv[:, 0] > 0).astype(float)
    return X, y, Xv, yv, np.array([2, 5, 7])


# The MLP case.  Eq. 4 needs a stationary point with a non-singular Hessian.  A Leaky-ReLU
# net's training loss is only piecewise smooth, and its minima on small problems sit on a
# kink or have (near-)null Hessian directions (a search over 800+ sizes, seeds and lambdas
# found no smooth, non-degenerate one): there Eq. 4 does not apply and no optimiser gets
# |grad| to round-off.  So the MLP check uses slope = 1 (the net is linear, smooth) with one
# hidden unit (wider linear nets have a rotation symmetry).  Its two unpenalised biases
# still leave one null direction of H (b_1 and b_2 trade off); the validation gradient has
# no component along it, so the system stays consistent and CG solves it.  It
# runs the MLP's forward, backward and R-op through the implicit machinery; the MLP's
# derivatives at kinked points are checked against finite differences in
# test_derivatives.py.
CASES = [
    ("lr-l2", hv.LR(4), "l2", False, -1.0, 40, 0),
    ("mlp-l2", hv.MLP((3, 1, 1), slope=1.0), "l2", False, -3.0, 40, 0),
    ("mlp-l2-per-layer", hv.MLP((3, 1, 1), slope=1.0), "l2", True,
     np.array([-3.0, -2.5]), 40, 0),
]


@pytest.mark.parametrize("name,model,penalty,per_layer,lam,n,seed", CASES,
                         ids=[c[0] for c in CASES])
def test_cg_equals_dense_and_finite_differences(name, model, penalty, per_layer, lam, n, seed):
    obj = hv.Objective(model, penalty, per_layer=per_layer)
    X, y, Xv, yv, idx = _problem(model, n=n, seed=seed)
    w0 = model.init(seed=3)
    dense = hv.implicit_hypergrad(obj, X, y, idx, Xv, yv, lam, w0, solver="dense",
                                  train_tol=1e-11)
    cg = hv.implicit_hypergrad(obj, X, y, idx, Xv, yv, lam, w0, solver="cg",
                               train_tol=1e-11, tol=1e-13)
    assert dense.info["train"]["grad_norm"] <= 1e-9
    assert np.abs(dense.dXp).max() > 1e-3
    assert cg.info["linear"]["converged"] and dense.info["linear"]["converged"]
    assert rel_err(cg.dXp, dense.dXp) <= 1e-8
    assert rel_err(cg.dlam, dense.dlam) <= 1e-8
    assert dense.dXp.shape == (len(idx), model.n_features)
    assert np.shape(dense.dlam) == np.shape(lam)

    w_star = dense.info["w"]

    def outer(X_, lam_):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", hv.ConvergenceWarning)
            w, _ = hv.train_stationary(obj, X_, y, lam_, w_star, tol=1e-13)
        return obj.val_loss(w, Xv, yv)

    h = 1e-5
    rng = np.random.default_rng(1)
    for _ in range(2):                        # random directions in X_p
        U = np.zeros_like(X)
        U[idx] = rng.normal(size=(len(idx), X.shape[1]))
        fd = (outer(X + h * U, lam) - outer(X - h * U, lam)) / (2 * h)
        assert rel_err(np.sum(dense.dXp * U[idx]), fd) <= 1e-4
    lam_arr = np.asarray(lam, dtype=float)
    fd_lam = np.zeros(lam_arr.shape).reshape(-1)
    for i in range(lam_arr.size):
        e = np.zeros(lam_arr.size)
        e[i] = h
        up, dn = lam_arr.reshape(-1) + e, lam_arr.reshape(-1) - e
        fd_lam[i] = (outer(X, up.reshape(lam_arr.shape)[()] if lam_arr.ndim == 0 else up)
                     - outer(X, dn.reshape(lam_arr.shape)[()] if lam_arr.ndim == 0 else dn)) / (2 * h)
    assert rel_err(np.reshape(dense.dlam, -1), fd_lam) <= 1e-4


def test_value_is_validation_loss_at_w_star():
    obj = hv.Objective(hv.LR(4), "l2")
    X, y, Xv, yv, idx = _problem(obj.model)
    r = hv.implicit_hypergrad(obj, X, y, idx, Xv, yv, 0.0)
    assert r.value == pytest.approx(float(obj.val_loss(r.info["w"], Xv, yv)), rel=1e-14)
    assert np.linalg.norm(obj.grad(r.info["w"], X, y, 0.0)) <= 1e-9


def test_no_penalty_gives_no_lam_gradient_and_no_poison_gives_no_dXp():
    obj = hv.Objective(hv.LR(4), None)
    X, y, Xv, yv, idx = _problem(obj.model)
    r = hv.implicit_hypergrad(obj, X, y, idx, Xv, yv, None, train_maxiter=50)
    assert r.dlam is None and r.dXp.shape == (3, 4)
    r = hv.implicit_hypergrad(hv.Objective(hv.LR(4), "l2"), X, y, None, Xv, yv, 0.0)
    assert r.dXp is None and np.shape(r.dlam) == ()


def test_cg_that_cannot_converge_warns():
    obj = hv.Objective(hv.LR(4), "l2")
    X, y, Xv, yv, idx = _problem(obj.model)
    with pytest.warns(hv.ConvergenceWarning, match="residual"):
        r = hv.implicit_hypergrad(obj, X, y, idx, Xv, yv, -8.0, solver="cg", maxiter=1)
    assert not r.info["linear"]["converged"] and r.info["linear"]["iterations"] == 1


def test_training_that_cannot_converge_warns():
    obj = hv.Objective(hv.LR(4), "l2")
    X, y, Xv, yv, idx = _problem(obj.model)
    with pytest.warns(hv.ConvergenceWarning, match="stationarity"):
        hv.implicit_hypergrad(obj, X, y, idx, Xv, yv, 0.0, train_maxiter=1, polish=0)


def test_solve_hvp_rejects_unknown_solver():
    with pytest.raises(ValueError, match="solver: expected one of"):
        hv.solve_hvp(lambda v: v, np.ones(3), solver="lu")
