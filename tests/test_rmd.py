"""Alg. 1 (RMD) and FMD: exact for the unrolled problem, memory strategies, limit T -> inf."""
import numpy as np
import pytest

import hvpoison as hv
from helpers import rel_err

T, ETA, H = 15, 0.3, 1e-5


def _data(d, n=16, m=10, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(float)
    Xv = rng.normal(size=(m, d))
    yv = (Xv[:, 0] > 0).astype(float)
    return X, y, Xv, yv, np.array([1, 6, 11])


CASES = [  # name, model, penalty, per_layer, lam, outer set
    ("lr-none", hv.LR(3), None, False, None, "val"),
    ("lr-l2", hv.LR(3), "l2", False, -1.0, "val"),
    ("lr-l1", hv.LR(3), "l1", False, -2.0, "val"),
    ("mlp-l2", hv.MLP((3, 4, 3, 1), 0.1), "l2", False, -1.5, "val"),
    ("mlp-l2-per-layer", hv.MLP((3, 4, 3, 1), 0.1), "l2", True, np.array([-1.0, -2.0, -1.5]), "val"),
    ("mlp-l1-per-layer", hv.MLP((3, 4, 1), 0.1), "l1", True, np.array([-2.5, -2.0]), "val"),
    ("lr-l2-target-set", hv.LR(3), "l2", False, -1.0, "target"),
    ("mlp-l2-targeted", hv.MLP((3, 4, 1), 0.1), "l2", True, np.array([-1.0, -2.0]), "targeted"),
]


def _outer_set(kind, Xv, yv, seed=5):
    if kind == "val":
        return Xv, yv
    rng = np.random.default_rng(seed)
    Xt = rng.normal(size=(7, Xv.shape[1]))
    yt = (Xt[:, 0] > 0).astype(float)
    return (Xt, yt) if kind == "target" else (Xt, 1 - yt)   # targeted: attacker's labels


@pytest.mark.parametrize("name,model,penalty,per_layer,lam,outer", CASES, ids=[c[0] for c in CASES])
def test_rmd_matches_finite_differences_of_the_unrolled_loss(name, model, penalty, per_layer,
                                                            lam, outer):
    obj = hv.Objective(model, penalty, per_layer=per_layer)
    X, y, Xv, yv, idx = _data(model.n_features)
    Xo, yo = _outer_set(outer, Xv, yv)
    w0 = np.random.default_rng(2).normal(size=model.n_params) * 0.3
    r = hv.rmd(obj, w0, X, y, idx, Xo, yo, lam, T, ETA)

    def F(X_, lam_):
        return obj.val_loss(hv.unroll(obj, w0, X_, y, lam_, T, ETA), Xo, yo)

    assert r.value == pytest.approx(float(F(X, lam)), rel=1e-13)
    rng = np.random.default_rng(3)
    for _ in range(2):
        U = np.zeros_like(X)
        U[idx] = rng.normal(size=(len(idx), X.shape[1]))
        fd = (F(X + H * U, lam) - F(X - H * U, lam)) / (2 * H)
        assert rel_err(np.sum(r.dXp * U[idx]), fd) <= 1e-6
    if lam is None:
        assert r.dlam is None
        return
    lam_arr = np.atleast_1d(np.asarray(lam, dtype=float))
    fd = np.array([(F(X, _shape(lam, lam_arr + H * e)) - F(X, _shape(lam, lam_arr - H * e)))
                   / (2 * H) for e in np.eye(lam_arr.size)])
    assert np.shape(r.dlam) == np.shape(lam)
    assert rel_err(np.atleast_1d(r.dlam), fd) <= 1e-6


@pytest.mark.parametrize("model", [hv.LR(3), hv.MLP((3, 4, 3, 1), 0.1)], ids=["lr", "mlp"])
@pytest.mark.parametrize("delta", [0.05, 1.0])
def test_rmd_of_the_bounded_outer_loss_matches_finite_differences(model, delta):
    """``delta > 0``: Alg. 1 differentiates the bounded cross-entropy (``bounded_ce``) of
    ``w_T`` on the outer set; its value and ``dX_p``, ``dlam`` against central differences
    of the unrolled loss."""
    from hvpoison.logistic import bounded_ce

    obj = hv.Objective(model, "l2")
    X, y, Xv, yv, idx = _data(model.n_features)
    w0 = np.random.default_rng(2).normal(size=model.n_params) * 0.3
    r = hv.rmd(obj, w0, X, y, idx, Xv, yv, -1.0, T, ETA, delta=delta)

    def F(X_, lam_):
        w_T = hv.unroll(obj, w0, X_, y, lam_, T, ETA)
        return float(bounded_ce(np, model.forward(w_T, Xv).z, yv, delta)[0])

    assert r.value == pytest.approx(F(X, -1.0), rel=1e-13)
    assert r.value < hv.rmd(obj, w0, X, y, idx, Xv, yv, -1.0, T, ETA).value   # below CE
    U = np.zeros_like(X)
    U[idx] = np.random.default_rng(3).normal(size=(len(idx), X.shape[1]))
    fd = (F(X + H * U, -1.0) - F(X - H * U, -1.0)) / (2 * H)
    assert rel_err(np.sum(r.dXp * U[idx]), fd) <= 1e-6
    assert rel_err(r.dlam, (F(X, -1.0 + H) - F(X, -1.0 - H)) / (2 * H)) <= 1e-6


def test_bounded_ce_is_the_cross_entropy_at_delta_zero_and_bounded_above():
    from hvpoison.logistic import bounded_ce, mean_ce

    rng = np.random.default_rng(0)
    z, y = rng.normal(size=50) * 20, (rng.random(50) < 0.5) * 1.0
    loss, res = bounded_ce(np, z, y, 0.0)
    assert float(loss) == pytest.approx(float(mean_ce(np, z, y)), rel=1e-9)
    np.testing.assert_allclose(res, (1 / (1 + np.exp(-z)) - y) / 50, atol=1e-15)
    for delta in (0.01, 0.1, 1.0):          # every row at most log((1 + delta) / delta)
        worst = bounded_ce(np, np.full(4, 50.0), np.zeros(4), delta)[0]
        assert float(worst) == pytest.approx(np.log((1 + delta) / delta), rel=1e-12)
        assert float(bounded_ce(np, z, y, delta)[0]) < float(loss)


def _shape(like, arr):
    return float(arr[0]) if np.ndim(like) == 0 else arr


@pytest.mark.parametrize("name,model,penalty,per_layer,lam,outer",
                         [c for c in CASES if c[2] is not None], ids=[c[0] for c in CASES if c[2]])
def test_rmd_equals_fmd_for_lam(name, model, penalty, per_layer, lam, outer):
    obj = hv.Objective(model, penalty, per_layer=per_layer)
    X, y, Xv, yv, idx = _data(model.n_features)
    w0 = model.init(4)
    r = hv.rmd(obj, w0, X, y, idx, Xv, yv, lam, 40, ETA)
    f = hv.fmd(obj, w0, X, y, idx, Xv, yv, lam, 40, ETA)
    assert f.dXp is None and f.value == pytest.approx(r.value, rel=1e-14)
    assert rel_err(np.atleast_1d(r.dlam), np.atleast_1d(f.dlam)) <= 1e-10


@pytest.mark.parametrize("steps", [1, 2, 7, 16, 100])
def test_checkpoint_equals_store_with_sqrt_T_states(steps):
    model = hv.MLP((3, 4, 1), 0.1)
    obj = hv.Objective(model, "l2", per_layer=True)
    X, y, Xv, yv, idx = _data(3)
    w0, lam = model.init(1), np.array([-1.0, -2.0])
    s = hv.rmd(obj, w0, X, y, idx, Xv, yv, lam, steps, ETA, memory="store")
    c = hv.rmd(obj, w0, X, y, idx, Xv, yv, lam, steps, ETA, memory="checkpoint")
    np.testing.assert_allclose(c.dXp, s.dXp, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(c.dlam, s.dlam, rtol=1e-12, atol=1e-15)
    assert s.info["stored_states"] == steps
    assert c.info["stored_states"] <= 2 * int(np.ceil(np.sqrt(steps))) + 1
    assert c.info["grads"] == 2 * steps and s.info["hvps"] == c.info["hvps"] == steps


def test_reverse_memory_is_approximate_and_reports_its_drift():
    obj = hv.Objective(hv.LR(3), "l2")
    X, y, Xv, yv, idx = _data(3)
    w0 = np.random.default_rng(0).normal(size=4)
    s = hv.rmd(obj, w0, X, y, idx, Xv, yv, -1.0, 30, 0.1, memory="store")
    r = hv.rmd(obj, w0, X, y, idx, Xv, yv, -1.0, 30, 0.1, memory="reverse")
    assert r.info["stored_states"] == 1 and r.value == s.value
    assert 0 < r.info["w0_error"] < 0.5
    assert 0 < rel_err(r.dXp, s.dXp) < 0.5          # the right direction, but not exact


def test_rmd_converges_to_the_implicit_hypergradient_as_T_grows():
    obj = hv.Objective(hv.LR(3), "l2")
    X, y, Xv, yv, idx = _data(3, n=30)
    lam = -2.0
    imp = hv.implicit_hypergrad(obj, X, y, idx, Xv, yv, lam)
    errs = []
    for steps in (10, 25, 50, 100, 200):
        r = hv.rmd(obj, np.zeros(4), X, y, idx, Xv, yv, lam, steps, 1.0)
        errs.append(max(rel_err(r.dXp, imp.dXp), rel_err(r.dlam, imp.dlam)))
    assert all(a > b for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] < 1e-3, errs


@pytest.mark.parametrize("kw,exc,msg", [
    (dict(memory="disk"), ValueError, "memory: expected one of"),
    (dict(T=0), ValueError, "T: expected a positive integer"),
    (dict(T=2.5), TypeError, "T: expected a positive integer"),
    (dict(eta=-1.0), ValueError, "eta: expected a positive finite number"),
    (dict(poison_idx=np.array([99])), ValueError, r"poison_idx: expected indices in \[0, 16\)"),
    (dict(delta=-0.1), ValueError, "delta: expected a finite number >= 0"),
])
def test_rmd_bad_input(kw, exc, msg):
    obj = hv.Objective(hv.LR(3), "l2")
    X, y, Xv, yv, idx = _data(3)
    a = dict(poison_idx=idx, T=5, eta=0.1, memory="store", delta=0.0)
    a.update(kw)
    with pytest.raises(exc, match=msg):
        hv.rmd(obj, np.zeros(4), X, y, a["poison_idx"], Xv, yv, 0.0, a["T"], a["eta"],
               memory=a["memory"], delta=a["delta"])


def test_kept_points_stay_at_their_own_step():
    """unroll(keep=) used to hand out points whose w moved on to w_T (issue #16, item 1)."""
    rng = np.random.default_rng(0)
    model = hv.MLP((3, 4, 1), slope=0.1)
    obj = hv.Objective(model, "l2")
    X, y = rng.normal(size=(20, 3)), (rng.random(20) < 0.5).astype(float)
    kept = {}
    hv.unroll(obj, model.init(1), X, y, -1.0, 6, 0.3, keep=lambda t, p: kept.__setitem__(t, p))
    v = rng.normal(size=model.n_params)
    w = model.init(1)
    for t in range(6):
        np.testing.assert_allclose(kept[t].hvp(v), obj.hvp(w, X, y, -1.0, v), rtol=1e-12)
        w = w - 0.3 * obj.grad(w, X, y, -1.0)


# -- never an exploded hypergradient in silence (issue 27) ---------------------------------
@pytest.mark.parametrize("memory", ["store", "checkpoint", "reverse", "fmd"])
@pytest.mark.parametrize("eta", [8.0, 50.0])          # 8.0: finite but exploded (~1e58)
def test_rmd_and_fmd_raise_divergence_error_as_train_does(memory, eta):
    import warnings

    rng = np.random.default_rng(0)
    X = rng.random((50, 10))
    y = (X[:, 0] > 0.5) * 1.0
    obj = hv.Objective(hv.LR(10), "l2")
    with pytest.raises(hv.DivergenceError, match=r"diverged.*T = 200.*eta = .*lam = -1.0"):
        hv.train(obj, X, y, -1.0, T=200, eta=eta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hv.ConvergenceWarning)     # reverse's own warning
        with pytest.raises(hv.DivergenceError, match=r"T = 200.*eta = .*lam = -1.0"):
            if memory == "fmd":
                hv.fmd(obj, np.zeros(11), X, y, None, X, y, -1.0, 200, eta)
            else:
                hv.rmd(obj, np.zeros(11), X, y, np.arange(5), X, y, -1.0, 200, eta,
                       memory=memory)
