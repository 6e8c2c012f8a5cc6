"""Victims (how the defender trains) and the methods of Alg. 2 (hypergradient + outer step):
``alg2`` is bit-for-bit the paper's algorithm as it was; every hypergradient matches finite
differences of its own objective; every method raises the attacker's objective, keeps the
box and the lam bounds, and resumes; every new argument is checked."""
import os
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hvpoison as hv
from helpers import blobs, rel_err
from hvpoison.attack import Context
from hvpoison.hypergrad import dense_hessian
from hvpoison.methods import RMD, Adam, Implicit, LineSearch, Method, Normalised
from hvpoison.victims import GD, Exact

sys.path.insert(0, os.path.dirname(__file__))
import make_alg2_golden as golden  # noqa: E402


@pytest.fixture(scope="module")
def data():
    X, y = blobs(60, d=3, seed=0)
    Xv, yv = blobs(20, d=3, seed=1)
    return X, y, Xv, yv


# -- alg2 is the paper's algorithm, unchanged ------------------------------------------
@pytest.mark.parametrize("case", sorted(golden.CASES))
def test_alg2_reproduces_the_recorded_results_bit_for_bit(case):
    """tests/data/alg2_golden.npz was written by the code before Alg. 2 was split into
    methods (commit 700f237): method="alg2" must give the same numbers. Bit for bit with
    the BLAS kernels that wrote it (OpenBLAS's SkylakeX); with others (measured: Haswell's,
    ``OPENBLAS_CORETYPE=Haswell``) a few entries differ in the last bit (2e-16 relative),
    so the check allows 1e-14: any change to the algorithm moves them by far more."""
    ref = np.load(os.path.join(os.path.dirname(__file__), "data", "alg2_golden.npz"))
    got = golden.arrays(golden.make(case))
    for k, v in got.items():
        np.testing.assert_allclose(v, ref[f"{case}/{k}"], rtol=1e-14, atol=0,
                                   err_msg=f"{case}/{k}")
    assert len(got) == sum(1 for k in ref.files if k.startswith(case + "/"))


# -- victims ---------------------------------------------------------------------------
def test_exact_reaches_the_optimum_and_agrees_with_trust_region(data):
    X, y, _, _ = data
    obj = hv.Objective(hv.LR(3), "l2")
    w = Exact(tol=1e-11).fit(obj, X, y, -2.0)
    assert np.linalg.norm(obj.grad(w, X, y, -2.0)) <= 1e-11
    w_ref, _ = hv.train_stationary(obj, X, y, -2.0, tol=1e-11)
    assert rel_err(w, w_ref) <= 1e-8
    # warm-started from elsewhere: the same optimum, and GD approaches it
    w_warm = Exact(tol=1e-11).fit(obj, X, y, -2.0, w0=np.ones(4))
    assert rel_err(w_warm, w) <= 1e-8
    w_gd = GD(T=3000, eta=0.5).fit(obj, X, y, -2.0)
    assert rel_err(w_gd, w) <= 1e-3


def test_newton_reuses_a_stale_factor(data):
    X, y, _, _ = data
    obj = hv.Objective(hv.LR(3), "l2")
    solver = Exact().solver()
    w, _ = solver.minimize(lambda w: obj.at(w, X, y, -2.0), np.zeros(4))
    refreshes = solver.counts["refreshes"]
    X2 = X.copy()
    X2[:3] += 0.05                                       # a small change, as in Alg. 2
    w2, info = solver.minimize(lambda w: obj.at(w, X2, y, -2.0), w)
    assert info["grad_norm"] <= solver.tol and info["newton"] <= 3
    assert solver.counts["refreshes"] == refreshes       # the old factor was good enough


def test_newton_without_a_dense_factor_above_dense_max(data):
    X, y, _, _ = data
    obj = hv.Objective(hv.LR(3), "l2")
    big = Exact().solver()
    big.dense_max = 2                                   # P = 4 > 2: plain CG
    w, info = big.minimize(lambda w: obj.at(w, X, y, -2.0), np.zeros(4))
    assert big.H is None and big.counts["refreshes"] == 0
    np.testing.assert_allclose(w, Exact(tol=1e-11).fit(obj, X, y, -2.0), rtol=1e-6)


def test_newton_with_fewer_rows_than_parameters_uses_the_woodbury_factor():
    """n < P / 2 (CIFAR-10's shape): the Hessian is kept as ``U U^T + diag(c)``; with a
    damping every diagonal entry is positive and the preconditioner is the exact inverse;
    without, the bias entry is approximated and the optimum is still the trust region's."""
    X, y = blobs(12, d=40, seed=3)
    obj = hv.Objective(hv.LR(40), "l2")
    pt = obj.at(np.full(41, 0.01), X, y, -1.0)
    solver = Exact().solver()
    solver.rebuild(pt)
    assert solver.H is None and solver.UC[0].shape == (41, 12)
    H = dense_hessian(pt.hvp, pt.w)
    U, c = solver.UC
    np.testing.assert_allclose(U @ U.T + np.diag(c), H, rtol=1e-10, atol=1e-13)
    r = np.random.default_rng(0).normal(size=41)
    np.testing.assert_allclose(solver.preconditioner(0.3)(r), np.linalg.solve(H + 0.3 *
                                                                              np.eye(41), r),
                               rtol=1e-9)
    w = Exact(tol=1e-10).fit(obj, X, y, -1.0)
    w_ref, _ = hv.train_stationary(obj, X, y, -1.0, tol=1e-11)
    assert np.linalg.norm(obj.grad(w, X, y, -1.0)) <= 1e-10 and rel_err(w, w_ref) <= 1e-7


@pytest.mark.parametrize("obj,msg", [
    (hv.Objective(hv.MLP((3, 4, 1)), "l2"), "victim: expected Exact\\(\\) needs a convex"),
    (hv.Objective(hv.LR(3), "l1"), "victim: expected Exact\\(\\) needs LR with an L2"),
    (hv.Objective(hv.LR(3), None), "victim: expected Exact\\(\\) needs LR with an L2"),
])
def test_exact_refuses_what_it_cannot_train(data, obj, msg):
    X, y, _, _ = data
    with pytest.raises(ValueError, match=msg):
        Exact().fit(obj, X, y, -2.0 if obj.penalty else None)


def test_evaluate_takes_a_victim(data):
    X, y, Xv, yv = data
    obj = hv.Objective(hv.LR(3), "l2")
    a = hv.evaluate(obj, X, y, Xv, yv, -2.0, victim="exact")
    b = hv.evaluate(obj, X, y, Xv, yv, -2.0, victim=Exact())
    c = hv.evaluate(obj, X, y, Xv, yv, -2.0, T=50, eta=0.3)
    d = hv.evaluate(obj, X, y, Xv, yv, -2.0, victim=GD(50, 0.3))
    np.testing.assert_array_equal(a["w"], b["w"])
    np.testing.assert_array_equal(c["w"], d["w"])
    assert np.linalg.norm(obj.grad(a["w"], X, y, -2.0)) <= 1e-8


# -- hypergradients against finite differences of their own objectives ------------------
def _fd_rows(f, Xc, rows, h=1e-5):
    g = np.zeros((len(rows), Xc.shape[1]))
    for i, r in enumerate(rows):
        for j in range(Xc.shape[1]):
            Xp, Xm = Xc.copy(), Xc.copy()
            Xp[r, j] += h
            Xm[r, j] -= h
            g[i, j] = (f(Xp) - f(Xm)) / (2 * h)
    return g


@pytest.mark.parametrize("warm", [False, True])
def test_rmd_hypergradients_match_finite_differences(data, warm):
    X, y, Xv, yv = data
    obj = hv.Objective(hv.LR(3), "l2")
    rows = np.array([1, 4, 7])
    victim = GD(T=40, eta=0.5)
    ctx = Context.make(obj, Xv, yv, victim, lam=-1.0, box=(-3.0, 3.0), rows=rows)
    hg = RMD(warm=warm)
    st = hg.start(ctx)
    lam = np.asarray(-1.0)
    hg(ctx, st, X, y, lam, False)                  # a first call: rmd-warm keeps its w_T
    w0 = st["w"] if warm else np.zeros(4)
    assert (st["w"] is not None) == warm
    if warm:
        w0 = w0.copy()
    value, dXp, dlam = hg(ctx, st, X, y, lam, True)

    def f(Xc):
        return float(obj.val_loss(hv.unroll(obj, w0, Xc, y, -1.0, 40, 0.5), Xv, yv))

    assert rel_err(dXp, _fd_rows(f, X, rows)) <= 1e-6
    assert abs(float(value) - f(X)) <= 1e-12
    fd_lam = (float(obj.val_loss(hv.unroll(obj, w0, X, y, -1.0 + 1e-5, 40, 0.5), Xv, yv))
              - float(obj.val_loss(hv.unroll(obj, w0, X, y, -1.0 - 1e-5, 40, 0.5), Xv, yv))
              ) / 2e-5
    assert abs(float(dlam) - fd_lam) <= 1e-6 * max(1.0, abs(fd_lam))


def test_implicit_hypergradient_matches_finite_differences_of_the_optimum(data):
    X, y, Xv, yv = data
    obj = hv.Objective(hv.LR(3), "l2")
    rows = np.array([0, 3, 8])
    ctx = Context.make(obj, Xv, yv, Exact(tol=1e-12), lam=-1.0, rows=rows)
    hg = Implicit(train_tol=1e-12)
    value, dXp, dlam = hg(ctx, hg.start(ctx), X, y, np.asarray(-1.0), True)

    def f(Xc, lam=-1.0):
        return float(obj.val_loss(Exact(tol=1e-12).fit(obj, Xc, y, lam), Xv, yv))

    assert rel_err(dXp, _fd_rows(f, X, rows)) <= 1e-6
    assert abs(float(value) - f(X)) <= 1e-12
    fd_lam = (f(X, -1.0 + 1e-5) - f(X, -1.0 - 1e-5)) / 2e-5
    assert abs(float(dlam) - fd_lam) <= 1e-6 * max(1.0, abs(fd_lam))


def test_damped_hypergradient_tends_to_the_undamped_one(data):
    X, y, Xv, yv = data
    obj = hv.Objective(hv.LR(3), "l2")
    rows = np.array([0, 3, 8])
    ctx = Context.make(obj, Xv, yv, Exact(tol=1e-12), lam=-1.0, rows=rows)

    def dXp(mu):
        hg = Implicit(damping=mu, train_tol=1e-12)
        return hg(ctx, hg.start(ctx), X, y, np.asarray(-1.0), True)

    exact = dXp(0.0)
    errs = [rel_err(dXp(mu)[1], exact[1]) for mu in (1e-1, 1e-2, 1e-3, 1e-5)]
    assert errs[0] > 1e-3                          # the damping does change the direction
    assert all(a > b for a, b in zip(errs, errs[1:])) and errs[-1] <= 1e-4
    # the defender's dlam is always the undamped one
    np.testing.assert_allclose(dXp(1e-1)[2], exact[2], rtol=1e-8)
    # the public entry point gives the same damped gradient
    pub = hv.implicit_hypergrad(obj, X, y, rows, Xv, yv, -1.0, damping=1e-2, train_tol=1e-12)
    assert rel_err(pub.dXp, dXp(1e-2)[1]) <= 1e-6


def test_solve_hvp_damping_and_preconditioner():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(30, 30))
    H = A @ A.T + 1e-3 * np.eye(30)
    b = rng.normal(size=30)
    u, info = hv.solve_hvp(lambda v: H @ v, b, solver="cg", damping=0.5,
                           precond=lambda r: np.linalg.solve(H + 0.5 * np.eye(30), r))
    np.testing.assert_allclose(u, np.linalg.solve(H + 0.5 * np.eye(30), b), rtol=1e-8)
    assert info["iterations"] <= 2 and info["converged"]
    ud, _ = hv.solve_hvp(lambda v: H @ v, b, solver="dense", damping=0.5)
    np.testing.assert_allclose(ud, u, rtol=1e-8)
    with pytest.raises(ValueError, match="damping: expected a finite number >= 0"):
        hv.solve_hvp(lambda v: H @ v, b, damping=-1.0)
    with pytest.raises(TypeError, match="precond: expected None or a callable"):
        hv.solve_hvp(lambda v: H @ v, b, precond=3)


@settings(max_examples=20, deadline=None)
@given(k=st.integers(1, 6), seed=st.integers(0, 2**16), mlp=st.booleans())
def test_blocked_hvp_equals_single_products(k, seed, mlp):
    rng = np.random.default_rng(seed)
    model = hv.MLP((4, 3, 1), slope=0.1) if mlp else hv.LR(4)
    obj = hv.Objective(model, "l2")
    X, y = rng.normal(size=(15, 4)), (rng.random(15) < 0.5).astype(float)
    w = 0.3 * rng.normal(size=model.n_params)
    V = rng.normal(size=(model.n_params, k))
    pt = obj.at(w, X, y, -1.0)
    single = np.stack([obj.hvp(w, X, y, -1.0, V[:, j].copy()) for j in range(k)], axis=1)
    np.testing.assert_allclose(pt.hvp_block(V), single, rtol=1e-10, atol=1e-13)


# -- every method: raises the objective, keeps the bounds, resumes -----------------------
METHODS = {
    "alg2": dict(method="alg2"),
    "strong-gd": dict(method="strong", iters=15),
    "strong-exact": dict(method="strong", victim="exact", iters=15),
    "rmd-warm+normalised": dict(method=Method(RMD(warm=True), Normalised(0.3), 15)),
    "rmd+adam-per-point": dict(method=Method(RMD(), Adam(0.05), 15, keep_best=True)),
    "normalised-per-point": dict(method=Method(RMD(), Normalised(0.3, per_point=True), 15)),
    "normalised-decay": dict(method=Method(RMD(), Normalised(0.5, decay=0.2), 15)),
    "adam-decay": dict(method=Method(RMD(), Adam(0.05, decay=0.1), 15)),
    "rmd+line-search": dict(method=Method(RMD(), LineSearch(0.5), 15)),
    "implicit+line-search": dict(method=Method(Implicit(), LineSearch(0.5), 15),
                                 victim="exact"),
    "implicit-damped": dict(method=Method(Implicit(damping=0.01), Adam(0.05), 15),
                            victim="exact"),
}


def _attack(data, learn=False, **kw):
    X, y, Xv, yv = data
    obj = hv.Objective(hv.LR(3), "l2")
    args = dict(n_poison=4, n_batches=2, T=60, eta=0.5, lam=-1.0, seed=3, box=(-2.0, 2.0))
    if "method" in kw and kw["method"] == "alg2":
        args.update(iters=15, alpha=0.3)
    if learn:
        args.update(learn_lam=True, lam=-2.0, lam_bounds=(-3.0, 0.5), alpha_lam=0.4)
    args.update(kw)
    return hv.attack(obj, X, y, Xv, yv, **args)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_raises_the_objective_within_bounds(data, name):
    batches = _attack(data, **METHODS[name])
    for prev, b in zip(batches, batches[1:]):
        assert b.trace["final"] > prev.trace["final"]
        assert b.trace["final"] >= b.trace["outer"][1] - 1e-12
        Xp = b.X[b.poison_idx]
        assert Xp.min() >= -2.0 and Xp.max() <= 2.0
    learned = _attack(data, learn=True, **METHODS[name])
    for b in learned:
        lams = np.array(b.trace["lam"], dtype=float)
        assert lams.min() >= -3.0 and lams.max() <= 0.5 and -3.0 <= b.lam <= 0.5


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_resumes(data, name):
    full = _attack(data, n_batches=3, **METHODS[name])
    b1 = full[1]
    rest = _attack(data, n_batches=3, start=(1, b1.X, b1.y), **METHODS[name])
    assert len(rest) == 2
    for a, b in zip(full[2:], rest):
        np.testing.assert_array_equal(a.X, b.X)
        assert a.trace == b.trace


def test_strong_beats_alg2_on_a_small_problem(data):
    """Against the victim each attacks (GD): the strong recipe reaches a higher objective."""
    a = _attack(data, method="alg2", n_batches=1)[-1].trace["final"]
    s = _attack(data, method="strong", n_batches=1, iters=40)[-1].trace["final"]
    assert s > a


def test_keep_best_returns_the_best_iterate(data):
    b = _attack(data, method=Method(RMD(), Adam(0.5), 15, keep_best=True), n_batches=1)[-1]
    assert b.trace["final"] >= max(b.trace["outer"]) - 1e-12


# -- bad inputs ------------------------------------------------------------------------
@pytest.mark.parametrize("kw,exc,msg", [
    (dict(method="bogus"), ValueError, "method: expected one of \\('alg2', 'strong', 'flip'\\)"),
    (dict(victim="bogus"), ValueError, "victim: expected one of \\('gd', 'exact'\\)"),
    (dict(method="alg2", victim="exact"), ValueError, "victim: expected GD\\(T, eta\\)"),
    (dict(method=Method(Implicit(), Adam()), victim="gd"), ValueError,
     "victim: expected Exact\\(\\) for an Implicit"),
    (dict(method=Method(), iters=3), ValueError, "iters/alpha: expected None with a Method"),
    (dict(method="strong", iters=0), ValueError, "iters: expected a positive integer"),
    (dict(method="strong", alpha=-1.0), ValueError, "lr: expected a positive finite"),
    (dict(T=0), ValueError, "T: expected a positive integer"),
    (dict(T=2.5), TypeError, "T: expected a positive integer"),
    (dict(eta=-0.1), ValueError, "eta: expected a positive finite number"),
    (dict(memory="bogus"), ValueError, "memory: expected one of"),
])
def test_attack_bad_new_arguments(data, kw, exc, msg):
    with pytest.raises(exc, match=msg):
        _attack(data, **kw)


@pytest.mark.parametrize("make,exc,msg", [
    (lambda: RMD(memory="x"), ValueError, "memory: expected one of"),
    (lambda: RMD(warm=1), TypeError, "warm: expected True or False"),
    (lambda: Implicit(damping=-1), ValueError, "damping: expected a finite number >= 0"),
    (lambda: Implicit(damping_per_batch=float("nan")), ValueError, "damping_per_batch"),
    (lambda: Implicit(train_tol=0), ValueError, "train_tol: expected a positive"),
    (lambda: Normalised(0.0), ValueError, "alpha: expected a positive finite number"),
    (lambda: Normalised(per_point="yes"), TypeError, "per_point: expected True or False"),
    (lambda: Adam(lr=0), ValueError, "lr: expected a positive finite number"),
    (lambda: Adam(beta1=1.0), ValueError, "beta1: expected a number in \\[0, 1\\)"),
    (lambda: Adam(eps=0), ValueError, "eps: expected a positive finite number"),
    (lambda: Adam(decay=-1), ValueError, "decay: expected a finite number >= 0"),
    (lambda: Normalised(decay=float("inf")), ValueError, "decay: expected a finite number"),
    (lambda: LineSearch(alpha=0), ValueError, "alpha: expected a positive finite number"),
    (lambda: LineSearch(shrink=1.0), ValueError, "shrink: expected a number in \\(0, 1\\)"),
    (lambda: LineSearch(grow=0.5), ValueError, "grow: expected a finite number >= 1"),
    (lambda: LineSearch(tries=0), ValueError, "tries: expected a positive integer"),
    (lambda: Method(hypergrad="rmd"), TypeError, "method.hypergrad: expected RMD"),
    (lambda: Method(step="adam"), TypeError, "method.step: expected Normalised"),
    (lambda: Method(keep_best=1), TypeError, "keep_best: expected True or False"),
    (lambda: GD(T=0), ValueError, "T: expected a positive integer"),
    (lambda: GD(w_init="ones"), ValueError, "w_init: expected 'zeros' or 'random'"),
    (lambda: Exact(tol=0), ValueError, "victim.tol: expected a positive"),
    (lambda: Exact(maxiter=0), ValueError, "victim.maxiter: expected a positive integer"),
])
def test_parts_bad_input(make, exc, msg):
    with pytest.raises(exc, match=msg):
        make()


@pytest.mark.parametrize("call,exc,msg", [
    (lambda o, X, y, Xv, yv: hv.evaluate(o, X, y, Xv, yv, -1.0, T=0), ValueError,
     "T: expected a positive integer"),
    (lambda o, X, y, Xv, yv: hv.train(o, X, y, -1.0, eta=-0.1), ValueError,
     "eta: expected a positive finite number"),
    (lambda o, X, y, Xv, yv: hv.unroll(o, np.zeros(4), X, y, -1.0, 2.5, 0.1), TypeError,
     "T: expected a positive integer"),
    (lambda o, X, y, Xv, yv: hv.lam_cv(o, X, y, grid=[]), ValueError,
     "grid: expected a non-empty list of finite lam values"),
    (lambda o, X, y, Xv, yv: hv.lam_cv(o, X, y, grid=[0.0, np.inf]), ValueError,
     "grid: expected a non-empty list"),
    (lambda o, X, y, Xv, yv: hv.implicit_hypergrad(o, X, y, [0], Xv[:, :2], yv, -1.0),
     ValueError, "Xval: expected shape"),
    (lambda o, X, y, Xv, yv: hv.rmd(o, np.zeros(4), X, y, [0], Xv, yv[:3], -1.0, 5, 0.1),
     ValueError, "yval: expected shape"),
    (lambda o, X, y, Xv, yv: hv.attack(o, X, y, Xv, yv, n_poison=2, n_batches=1, lam=-1.0,
                                       target=(Xv[:, :2], yv)), ValueError,
     "target\\[0\\]: expected shape"),
])
def test_api_arguments_are_checked_and_named(data, call, exc, msg):
    X, y, Xv, yv = data
    with pytest.raises(exc, match=msg):
        call(hv.Objective(hv.LR(3), "l2"), X, y, Xv, yv)


def test_keep_best_follows_the_attackers_sign_when_targeted(data):
    X, y, Xv, yv = data
    obj = hv.Objective(hv.LR(3), "l2")
    Xt, yt = blobs(6, d=3, seed=9)
    b = hv.attack(obj, X, y, Xv, yv, n_poison=4, n_batches=1, T=60, eta=0.5, lam=-1.0,
                  seed=3, box=(-2.0, 2.0), target=(Xt, 1 - yt), targeted=True,
                  method=Method(RMD(), Adam(0.5), 15, keep_best=True))[-1]
    # trace["outer"] holds sign * loss: the attacker's objective, which keep_best maximises
    assert b.trace["final"] >= max(b.trace["outer"]) - 1e-12


def test_divergence_is_an_error_naming_the_step_and_lam():
    """Issue #15, item 2: a step too large for e^lam is an error, never a silent result."""
    from hvpoison.data import load_task

    s = load_task("mnist-mini", n_tr=200, n_test=200, seed=0)
    obj = hv.Objective(hv.LR(784), "l2")
    with pytest.raises(hv.DivergenceError, match=r"eta = 0.1 with lam = 4.0; eta must stay "
                                                 r"below 2 / L = 0.0\d+"):
        hv.train(obj, s.Xtr, s.ytr, 4.0, T=200, eta=0.1)
    w = hv.train(obj, s.Xtr, s.ytr, 4.0, T=200, eta=0.02)        # below the bound: trains
    assert np.isfinite(w).all()
    with pytest.raises(hv.DivergenceError, match="lam = 25.0"):
        hv.attack(obj, s.Xtr, s.ytr, s.Xval, s.yval, n_poison=5, n_batches=1, iters=2, T=50,
                  lam=25.0, seed=0)


def test_a_diverging_experiment_fails_with_one_line(tmp_path, capsys):
    from hvpoison.cli import main

    path = tmp_path / "e.toml"
    path.write_text('name = "d"\n[data]\ntask = "mnist-mini"\nn_tr = 100\nn_test = 200\n'
                    '[defense]\nsettings = ["large"]\nlam_large = 4.0\n'
                    '[attack]\nn_poison = 5\nn_batches = 1\niters = 2\nT = 50\n[test]\nT = 50\n')
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()      # found before any work
    assert len(err) == 1 and "defense.lam_large: expected a value at which gradient " \
        "descent with attack.eta = 0.1 trains" in err[0] and "lower attack.eta" in err[0]
    assert not (tmp_path / "o").exists()


def test_a_learned_lam_stays_where_the_gd_victim_trains(data):
    """lam_bounds reach e^lam = 54 but eta = 0.5 trains only below 2 / eta - L_data: the
    learned lam is capped there (GD.stable_lam), and the attack's every training converges."""
    X, y, Xv, yv = data
    y = y.copy()
    flip = np.random.default_rng(0).choice(60, 27, replace=False)
    y[flip] = 1 - y[flip]               # noisy labels: the validation loss asks for a large lam
    obj = hv.Objective(hv.LR(3), "l2")
    hi = GD(T=50, eta=0.5).stable_lam(obj, X, y)
    assert -10 < hi < 4
    with pytest.raises(hv.DivergenceError):                  # what the cap keeps away
        hv.train(obj, X, y, 4.0, T=50, eta=0.5)
    batches = hv.attack(obj, X, y, Xv, yv, n_poison=6, n_batches=1, iters=20, T=50, eta=0.5,
                        lam=-1.0, learn_lam=True, alpha_lam=0.5, lam_bounds=(-10, 4))
    lams = batches[-1].trace["lam"]
    assert max(lams) == pytest.approx(hi) and lams[-1] == pytest.approx(hi)   # it got there
    hv.train(obj, batches[-1].X, batches[-1].y, hi, T=500, eta=0.5)      # trains, no error
    with pytest.raises(ValueError, match="eta: expected a step at which gradient descent"):
        hv.attack(obj, X, y, Xv, yv, n_poison=6, n_batches=1, T=50, eta=50.0, lam=-2.0,
                  learn_lam=True)
    assert GD().stable_lam(hv.Objective(hv.LR(3), "l1"), X, y) is None


def test_line_search_only_takes_steps_that_raise_the_true_objective(data):
    """With a deterministic victim (LR from zeros) each hyperiteration's objective is the one
    the line search accepted: the trace never falls."""
    b = _attack(data, n_batches=1, method=Method(RMD(), LineSearch(1.0), 12))[-1]
    outer = b.trace["outer"]
    assert all(n >= o - 1e-12 for o, n in zip(outer[1:], outer[2:]))
    assert outer[-1] > outer[1]


def test_newton_preconditioner_by_triangular_solves_above_inverse_max(data, monkeypatch):
    from hvpoison.victims import Newton

    X, y, _, _ = data
    obj = hv.Objective(hv.LR(3), "l2")
    monkeypatch.setattr(Newton, "INVERSE_MAX", 2)           # P = 4: the two solves
    w, info = Exact().solver().minimize(lambda w: obj.at(w, X, y, -2.0), np.zeros(4))
    np.testing.assert_allclose(w, Exact(tol=1e-11).fit(obj, X, y, -2.0), rtol=1e-6)


def test_strong_is_chosen_per_victim_and_model():
    from hvpoison.methods import as_method

    lr, mlp = hv.LR(3), hv.MLP((3, 4, 1))
    m = as_method("strong", GD(), model=mlp)
    assert isinstance(m.step, Normalised) and m.step.alpha == 1.0 and m.keep_best
    assert m.iters == 40 and m.check_every == 4     # checked iterates, from initDp's points
    assert m.hypergrad == RMD(eval_starts=6, dtype="float32")
    m = as_method("strong", GD(), model=lr)
    assert isinstance(m.step, Adam) and m.keep_best
    m = as_method("strong", Exact(), model=lr)
    assert isinstance(m.hypergrad, Implicit) and not m.keep_best
    assert m.hypergrad.damping_per_batch == 0.006
    assert as_method("alg2", GD(), model=mlp).step == Normalised(1.0)


# -- the flip baseline and the strong MLP recipe's parts (issue 26) -----------------------
def test_flip_returns_the_attacks_own_starting_points(data):
    """``method="flip"``: initDp's label-flipped clones, drawn exactly as every method
    draws them, and never moved; the objective is measured once per batch."""
    flip = _attack(data, method="flip", n_batches=3)
    for name in ("alg2", "strong-gd"):
        other = _attack(data, n_batches=3, **METHODS[name])
        for f, o in zip(flip[1:], other[1:]):
            np.testing.assert_array_equal(f.X0, o.X0)
            np.testing.assert_array_equal(f.y, o.y)
    X = data[0]
    for prev, b in zip(flip, flip[1:]):
        new = np.setdiff1d(b.poison_idx, prev.poison_idx)
        np.testing.assert_array_equal(b.X[new], b.X0)          # the clones, unmoved
        np.testing.assert_array_equal(np.delete(b.X, b.poison_idx, 0),
                                      np.delete(X, b.poison_idx, 0))
        assert len(b.trace["outer"]) == 1
    learned = _attack(data, learn=True, method="flip", n_batches=1, iters=5)[-1]
    assert len(learned.trace["lam"]) == 5 and learned.lam != -2.0   # the defender still learns
    np.testing.assert_array_equal(learned.X[learned.poison_idx], learned.X0)


def _small_rmd_problem():
    """A small MLP problem for RMD's own options: ``(obj, X, y, Xv, yv, rows, ctx)`` with
    ``ctx()`` a fresh attack context (GD(25, 0.3), ``lam = -2``, the batch stream of seed
    5), so two calls draw the same ``initW`` sequence."""
    from hvpoison.attack import Context

    rng = np.random.default_rng(4)
    obj = hv.Objective(hv.MLP((3, 4, 1), slope=0.1), "l2")
    X, y = rng.random((30, 3)), (rng.random(30) < 0.5).astype(float)
    Xv, yv = rng.random((10, 3)), (rng.random(10) < 0.5).astype(float)
    rows = np.arange(4)

    def ctx():
        c = Context.make(obj, Xv, yv, GD(25, 0.3), lam=-2.0, rows=rows, seed=5)
        c.data = obj.prepare(X, y, -2.0)
        return c

    return obj, X, y, Xv, yv, rows, ctx


def test_rmd_over_several_starts_is_the_mean_of_separate_ones():
    """``RMD(starts=2)``: the mean of the hypergradients from the two ``initW`` draws the
    batch's stream gives, each an Alg. 1 hypergradient (checked against finite differences
    in test_rmd.py)."""
    obj, X, y, Xv, yv, rows, ctx = _small_rmd_problem()

    c = ctx()
    v2, g2, l2 = RMD(starts=2)(c, RMD(starts=2).start(c), X, y, np.asarray(-2.0), True)
    c = ctx()
    parts = [hv.rmd(obj, c.init_w(), X, y, rows, Xv, yv, -2.0, 25, 0.3) for _ in range(2)]
    np.testing.assert_allclose(g2, (parts[0].dXp + parts[1].dXp) / 2, rtol=1e-12)
    np.testing.assert_allclose(l2, (parts[0].dlam + parts[1].dlam) / 2, rtol=1e-12)
    assert float(v2) == pytest.approx((parts[0].value + parts[1].value) / 2, rel=1e-12)
    # in single precision: the same direction to float32's accuracy, in the data's dtype
    c = ctx()
    v1, g1, _ = RMD(dtype="float32")(c, RMD(dtype="float32").start(c), X, y,
                                     np.asarray(-2.0), True)
    assert g1.dtype == np.float64
    np.testing.assert_allclose(g1, parts[0].dXp, rtol=2e-3, atol=1e-6)


def test_rmd_with_a_bounded_outer_loss_keeps_the_defenders_dlam_on_the_cross_entropy():
    """``RMD(delta=...)``: the attacker's value and ``dX_p`` are the bounded loss's
    (``hv.rmd(..., delta=)``, finite-difference checked in test_rmd.py), while the
    defender's ``dlam`` stays the validation cross-entropy's (Eq. 3)."""
    obj, X, y, Xv, yv, rows, ctx = _small_rmd_problem()

    m = RMD(delta=0.1)
    c = ctx()
    v, g, dlam = m(c, m.start(c), X, y, np.asarray(-2.0), True)
    w0 = ctx().init_w()
    bounded = hv.rmd(obj, w0, X, y, rows, Xv, yv, -2.0, 25, 0.3, delta=0.1)
    ce = hv.rmd(obj, w0, X, y, rows, Xv, yv, -2.0, 25, 0.3)
    assert float(v) == pytest.approx(bounded.value, rel=1e-12)
    np.testing.assert_allclose(g, bounded.dXp, rtol=1e-12)
    np.testing.assert_allclose(dlam, ce.dlam, rtol=1e-12)
    assert not np.allclose(bounded.dlam, ce.dlam)
    # the keep-best's score: the bounded loss of each fixed start's w_T, averaged
    from hvpoison.logistic import bounded_ce

    m = RMD(delta=0.1, eval_starts=2)
    c = ctx()
    st = m.start(c)
    want = np.mean([bounded_ce(np, obj.model.forward(GD(25, 0.3).fit(obj, X, y, -2.0, w0=w),
                                                     Xv).z, yv, 0.1)[0]
                    for w in st["eval_w0"]])
    assert m.final(c, st, X, y, np.asarray(-2.0)) == pytest.approx(float(want), rel=1e-10)


def test_rmd_truncated_to_a_horizon_differentiates_the_last_steps():
    """``RMD(horizon=h)``: Alg. 1 through the last ``h`` of the victim's ``T`` steps, from
    ``w_{T-h}`` (truncated back-propagation)."""
    from hvpoison.attack import Context

    rng = np.random.default_rng(6)
    obj = hv.Objective(hv.LR(3), "l2")
    X, y = rng.random((30, 3)), (rng.random(30) < 0.5).astype(float)
    Xv, yv = rng.random((10, 3)), (rng.random(10) < 0.5).astype(float)
    c = Context.make(obj, Xv, yv, GD(25, 0.3), lam=-2.0, rows=np.arange(4), seed=5)
    c.data = obj.prepare(X, y, -2.0)
    m = RMD(horizon=10)
    _, g, _ = m(c, m.start(c), X, y, np.asarray(-2.0), False)
    w15 = hv.unroll(obj, np.zeros(4), X, y, -2.0, T=15, eta=0.3)
    want = hv.rmd(obj, w15, X, y, np.arange(4), Xv, yv, -2.0, 10, 0.3)
    np.testing.assert_allclose(g, want.dXp, rtol=1e-12)


@pytest.mark.parametrize("kw, msg", [
    (dict(starts=0), "starts: expected a positive integer"),
    (dict(eval_starts=-1), "eval_starts: expected an integer >= 0"),
    (dict(dtype="float16"), "dtype: expected None, 'float32' or 'float64'"),
    (dict(horizon=-1), "horizon: expected an integer >= 0"),
    (dict(eta_scale=0), "eta_scale: expected a positive"),
    (dict(delta=-1.0), "delta: expected a finite number >= 0"),
])
def test_rmd_options_are_checked(kw, msg):
    with pytest.raises((ValueError, TypeError), match=msg):
        RMD(**kw)


@pytest.mark.parametrize("recipe", ["custom", "strong_mlp", "strong_mlp_bounded"])
def test_checked_keep_best_never_returns_less_than_the_starting_points(data, recipe):
    """``keep_best`` with ``check_every``: the attacker's objective of initDp's points
    (measured on the batch's fixed starts) is a candidate, so the returned points are never
    worse than flip's on the attacker's own objective (the MLP's ``strong`` recipe too,
    float32 and all)."""
    from hvpoison.methods import strong_mlp

    X, y, Xv, yv = data
    obj = hv.Objective(hv.MLP((3, 4, 1), slope=0.1), "l2")
    m = Method(RMD(eval_starts=2), Normalised(3.0), 6, keep_best=True, check_every=2) \
        if recipe == "custom" else strong_mlp(iters=6, alpha=3.0,
                                              delta=1.0 if recipe.endswith("bounded") else 0.0)
    want = [0, 2, 4] if recipe == "custom" else [0, 4]
    for b in hv.attack(obj, X, y, Xv, yv, n_poison=4, n_batches=2, T=30, eta=0.3, lam=-2.0,
                       seed=1, box=(-2.0, 2.0), method=m)[1:]:
        checks = b.trace["checks"]
        assert [k for k, _ in checks] == want
        assert b.trace["final"] >= max(v for _, v in checks) - 1e-12 >= checks[0][1] - 1e-12
        assert b.X.dtype == np.float64 and np.all(np.abs(b.X[b.poison_idx]) <= 2.0)


def _small_lam_problem():
    """A small MLP problem with a learned lam on which initDp's points win the checks
    scored at their own lam (the second seeded draw)."""
    rng = np.random.default_rng(0)
    for _ in range(2):                               # the second draw: seed 1's problem
        X = rng.random((60, 3))
        y = (X[:, 0] + 0.3 * rng.standard_normal(60) > 0.5) * 1.0
        Xv = rng.random((20, 3))
        yv = (Xv[:, 0] > 0.5) * 1.0
    return X, y, Xv, yv


def test_a_checked_keep_best_relearns_the_defenders_lam_on_the_points_it_returns():
    """With a learned ``lam``, an earlier iterate must not come back with the ``lam`` of
    that moment (``lam0`` itself when initDp's points win: the attacker would be choosing
    the defender's ``lam``); the defender learns ``lam`` on the returned points (Eq. 3,
    ``iters`` steps from ``lam0``, ``X_p`` held)."""
    from hvpoison.methods import strong_mlp

    X, y, Xv, yv = _small_lam_problem()
    obj = hv.Objective(hv.MLP((3, 4, 1), slope=0.1), "l2")
    b = hv.attack(obj, X, y, Xv, yv, n_poison=6, n_batches=1, T=30, eta=0.3, lam=-2.0,
                  learn_lam=True, seed=1, box=(0.0, 1.0),
                  method=strong_mlp(iters=8, alpha=1.0, check_lam="own"))[-1]
    assert b.trace["best"] == 0                       # initDp's points won ...
    np.testing.assert_array_equal(b.X[b.poison_idx], b.X0)
    relearned = b.trace["lam_relearned"]
    assert len(relearned) == 8 and float(b.lam) == relearned[-1] != -2.0   # ... not lam0
    assert b.trace["final"] <= max(v for _, v in b.trace["checks"])


@pytest.mark.parametrize("check_lam", ["own", "final"])
def test_check_lam_sets_the_defender_each_candidate_is_scored_against(monkeypatch, check_lam):
    """``check_lam="own"``: each checked iterate is scored at the ``lam`` it was reached
    with (initL's for initDp's points); ``"final"``: every one at the batch's last ``lam``,
    the one the last iterate is scored at."""
    from hvpoison.methods import strong_mlp

    lams, final = [], RMD.final

    def spy(self, ctx, state, Xc, yc, lam):
        if ctx.b == 1:                               # the batch that moves X_p
            lams.append(float(np.asarray(lam).ravel()[0]))
        return final(self, ctx, state, Xc, yc, lam)

    monkeypatch.setattr(RMD, "final", spy)
    X, y, Xv, yv = _small_lam_problem()
    obj = hv.Objective(hv.MLP((3, 4, 1), slope=0.1), "l2")
    b = hv.attack(obj, X, y, Xv, yv, n_poison=6, n_batches=1, T=30, eta=0.3, lam=-2.0,
                  learn_lam=True, seed=1, box=(0.0, 1.0),
                  method=strong_mlp(iters=8, alpha=1.0, check_lam=check_lam))[-1]
    assert [k for k, _ in b.trace["checks"]] == [0, 4]
    checks, last = lams[:2], lams[2]                 # the two checks, then the last iterate
    if check_lam == "own":
        assert checks[0] == -2.0 and checks[1] != checks[0]
    else:
        assert checks == [last, last] and last != -2.0
    assert b.trace["final"] >= max(v for _, v in b.trace["checks"]) - 1e-12 or \
        "lam_relearned" in b.trace


def test_check_lam_changes_nothing_where_lam_is_fixed(data):
    from hvpoison.methods import strong_mlp

    X, y, Xv, yv = data
    obj = hv.Objective(hv.MLP((3, 4, 1), slope=0.1), "l2")
    runs = [hv.attack(obj, X, y, Xv, yv, n_poison=4, n_batches=2, T=30, eta=0.3, lam=-2.0,
                      seed=1, box=(-2.0, 2.0), method=strong_mlp(iters=6, alpha=3.0,
                                                                  check_lam=c))
            for c in ("own", "final")]
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a.X, b.X)
        assert a.trace.get("checks") == b.trace.get("checks")
    assert runs[0][-1].trace["checks"]


def test_check_lam_is_checked():
    with pytest.raises(ValueError, match="check_lam: expected 'own' or 'final'"):
        Method(RMD(), Normalised(1.0), 4, keep_best=True, check_every=2, check_lam="last")
