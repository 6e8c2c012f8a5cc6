"""The Hessian-derived step size ``eta = c / L`` (issue 16, ``eta="auto"``): Lanczos against
the dense Hessian and the power iteration, LR's bound at random ``w``, and gradient descent
(Eq. 6) at ``auto_eta`` over the documented ``lam`` bounds [-10, 4] on the three tasks'
shapes (real data when present, uniform synthetic data always), LR and the 784-32-16-1 MLP,
L2 and L1; a too-large ``c`` is caught by the same checks."""
import functools
import math
import os
from pathlib import Path

import numpy as np
import pytest

import hvpoison as hv
from hvpoison import stepsize
from hvpoison.stepsize import auto_eta
from hvpoison.data import DataError, load_task
from hvpoison.hypergrad import dense_hessian
from hvpoison.experiments.steps import format_task_table, task_table

SHARED = Path(os.environ.get("HVPOISON_TEST_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "datasets"))
BOUNDS = (-10.0, 4.0)                       # README, Defaults: the lam bounds
LAMS = (-10.0, -6.0, -3.0, 0.0, 2.0, 4.0)   # a grid over BOUNDS, denser at the top
T = {"lr": 200, "mlp": 100}                 # the protocol's T for LR; the MLP's costs more
N_TR = 1000                                 # the protocol's n_tr
DATA = ("mnist", "fmnist", "cifar10", "uniform784", "uniform3072")


# -- data ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def dataset(name):
    """``(X (1000, d), y (1000,))``: a task's training split (skipped when its files are
    absent), or uniform ``[0, 1]`` features of the tasks' shapes with balanced labels."""
    if name == "mnist-mini":                      # embedded: always present
        s = load_task(name, n_tr=N_TR, n_val=2, n_test=2, seed=0)
        return s.Xtr, s.ytr
    if name.startswith("uniform"):
        d = int(name[len("uniform"):])
        X = np.random.default_rng(d).uniform(0.0, 1.0, (N_TR, d))
        return X, (np.arange(N_TR) % 2).astype(np.float64)
    try:
        s = load_task(name, n_tr=N_TR, n_val=2, n_test=2, seed=0, data_dir=SHARED,
                      download=False)
    except DataError as err:
        return str(err)
    return s.Xtr, s.ytr


def data_or_skip(name):
    got = dataset(name)
    if isinstance(got, str):
        pytest.skip(f"the {name} files are not at {SHARED} (CI has them beside the clone; set "
                    f"HVPOISON_TEST_DATA): {got}")
    return got


def mini(n=300):
    if n == N_TR:
        return dataset("mnist-mini")
    s = load_task("mnist-mini", n_tr=n, n_val=2, n_test=2, seed=0)
    return s.Xtr, s.ytr


def model_for(kind, d):
    return hv.LR(d) if kind == "lr" else hv.MLP((d, 32, 16, 1))


# -- top_eigenvalue ------------------------------------------------------------------------
def dense_top(point):
    H = dense_hessian(point.hvp, point.w, point.hvp_block)
    return np.linalg.eigvalsh(H)


@pytest.mark.parametrize("penalty, lam", [(None, None), ("l2", 0.5), ("l1", -1.0)])
def test_lanczos_matches_the_dense_hessian_lr(penalty, lam):
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(40, 6)), (rng.random(40) < 0.5).astype(float)
    obj = hv.Objective(hv.LR(6), penalty)
    for scale in (0.0, 0.3, 3.0):
        pt = obj.at(scale * rng.normal(size=7), X, y, lam)
        ev = dense_top(pt)
        assert ev[0] >= -1e-12                                  # LR's H is PSD
        assert stepsize.top_eigenvalue(pt) == pytest.approx(ev[-1], rel=1e-9)


@pytest.mark.parametrize("penalty, lam", [(None, None), ("l2", -1.0)])
def test_lanczos_matches_the_dense_hessian_mlp(penalty, lam):
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(30, 5)), (rng.random(30) < 0.5).astype(float)
    model = hv.MLP((5, 4, 3, 1))
    obj = hv.Objective(model, penalty)
    seen_negative = False
    for seed in range(3):
        pt = obj.at(2.0 * model.init(seed), X, y, lam)
        ev = dense_top(pt)
        seen_negative |= ev[0] < -1e-8
        assert stepsize.top_eigenvalue(pt) == pytest.approx(ev[-1], rel=1e-9)
    assert seen_negative                          # the MLP's H is indefinite here: "LA" matters


class DensePoint:
    """A stand-in Point for a fixed symmetric ``H``."""

    def __init__(self, H):
        self.H, self.w, self.xp = H, np.zeros(H.shape[0]), np

    def hvp(self, v):
        return self.H @ v

    def hvp_block(self, V):
        return self.H @ V


def test_largest_algebraic_not_largest_magnitude():
    """Power iteration finds the largest |lambda| (here the negative -10); GD's stability is
    bounded by the largest algebraic one, which Lanczos with which="LA" returns."""
    Q = np.linalg.qr(np.random.default_rng(0).normal(size=(12, 12)))[0]
    H = Q @ np.diag([-10.0, 3.0] + [0.5] * 10) @ Q.T
    assert stepsize.top_eigenvalue(DensePoint(H)) == pytest.approx(3.0, rel=1e-9)


def test_breakdown_and_tiny_problems():
    """A zero or rank-one ``H`` (a saturated sigmoid, one row) breaks Lanczos down: the
    Ritz values of the invariant Krylov space are exact; ``P <= 2`` is solved the same way."""
    u = np.random.default_rng(1).normal(size=30)
    assert stepsize.top_eigenvalue(DensePoint(np.zeros((30, 30)))) == 0.0
    assert stepsize.top_eigenvalue(DensePoint(np.outer(u, u))) == pytest.approx(u @ u, rel=1e-9)
    assert stepsize.top_eigenvalue(DensePoint(np.array([[2.0, 1.0], [1.0, 2.0]]))) == \
        pytest.approx(3.0, rel=1e-12)
    assert stepsize.top_eigenvalue(DensePoint(np.array([[-1.0]]))) == pytest.approx(-1.0)


def power_iteration(pt, iters):
    """An independent estimate of the dominant eigenvalue of ``H`` at ``pt`` (its largest
    in magnitude: the top one here, where ``H``'s top eigenvalue dominates)."""
    v = np.ones_like(pt.w) / np.sqrt(pt.w.shape[0])
    L = 0.0
    for _ in range(iters):
        Hv = pt.hvp(v)
        L = float(np.linalg.norm(Hv))
        v = Hv / L
    return L


@pytest.mark.parametrize("kind", ["lr", "mlp"])
def test_lanczos_agrees_with_the_power_iteration_and_repeats(kind):
    X, y = mini()
    model = model_for(kind, 784)
    obj = hv.Objective(model, "l2")
    w0 = model.init(0)
    pt = obj.at(w0, X, y, -2.0)
    lz = stepsize.top_eigenvalue(pt)
    assert lz == pytest.approx(power_iteration(pt, 200), rel=1e-6)
    assert stepsize.curvature(obj, w0, X, y, -2.0) == lz              # the one estimator
    assert stepsize.top_eigenvalue(pt) == lz                          # seeded start: repeatable
    assert stepsize.top_eigenvalue(pt, seed=5) == pytest.approx(lz, rel=1e-8)
    pt32 = obj.at(w0.astype(np.float32), X.astype(np.float32), y, -2.0)
    assert stepsize.top_eigenvalue(pt32) == pytest.approx(lz, rel=1e-5)          # float32


# -- curvature_bound -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mnist-mini", "uniform784"])
def test_lr_bound_holds_at_every_w(name):
    X, y = mini(1000) if name == "mnist-mini" else dataset(name)
    model = hv.LR(X.shape[1])
    rng = np.random.default_rng(3)
    for penalty in ("l2", "l1"):
        obj = hv.Objective(model, penalty)
        L = stepsize.curvature_bound(obj, X, y, BOUNDS)
        for lam in (-10.0, 0.0, 4.0):
            for scale in (0.01, 0.1, 1.0, 10.0):
                w = scale * rng.normal(size=model.n_params)
                assert stepsize.top_eigenvalue(obj.at(w, X, y, lam)) <= L * (1 + 1e-9)
        # attained at w = 0 by the data term (L1), and nearly with lam = high (L2: the
        # unpenalised bias keeps the sum of the two tops from being an eigenvalue)
        top = stepsize.top_eigenvalue(obj.at(np.zeros(model.n_params), X, y, BOUNDS[1]))
        assert top == pytest.approx(L, rel=1e-8 if penalty == "l1" else 1e-2)
    data = stepsize.curvature_bound(hv.Objective(model, None), X, y, BOUNDS)
    assert stepsize.curvature_bound(hv.Objective(model, "l2"), X, y, BOUNDS) == \
        pytest.approx(data + math.exp(BOUNDS[1]), rel=1e-12)


def test_mlp_bound_is_the_curvature_at_w0_times_the_safety_factor():
    X, y = mini()
    model = hv.MLP((784, 32, 16, 1))
    w0 = model.init(3)
    top = stepsize.top_eigenvalue(hv.Objective(model, None).at(w0, X, y))
    for penalty in ("l2", "l1"):
        L = stepsize.curvature_bound(hv.Objective(model, penalty), X, y, (-10, 1), w0=w0)
        assert L == pytest.approx(stepsize.MLP_SAFETY * top + math.e, rel=1e-8)
    assert stepsize.curvature_bound(hv.Objective(model, None), X, y, BOUNDS, w0=w0,
                                    safety=1.0) == pytest.approx(top, rel=1e-12)
    assert stepsize.curvature_bound(hv.Objective(model, None), X, y, BOUNDS) == \
        pytest.approx(stepsize.MLP_SAFETY * stepsize.top_eigenvalue(
            hv.Objective(model, None).at(model.init(0), X, y)), rel=1e-12)


@pytest.mark.parametrize("bad", [(4.0, -10.0), (1.0, 1.0), (float("nan"), 1.0),
                                 (-np.inf, 4.0), (1.0,), "ab", None, (True, 2.0), (0, 1, 2)])
def test_bad_lam_bounds(bad):
    X, y = mini(50)
    with pytest.raises(ValueError, match=r"^lam_bounds: expected \[low, high\] with finite "
                                         r"low < high, got "):
        stepsize.auto_eta(hv.Objective(hv.LR(784), "l2"), X, y, bad)


@pytest.mark.parametrize("bad, exc", [(0.0, ValueError), (-1.0, ValueError), (2.0, ValueError),
                                      (2.5, ValueError), (float("nan"), ValueError),
                                      ("1", TypeError), (True, TypeError)])
def test_bad_c(bad, exc):
    X, y = mini(50)
    with pytest.raises(exc, match=r"^c: expected "):
        stepsize.auto_eta(hv.Objective(hv.LR(784), "l2"), X, y, BOUNDS, c=bad)


def test_bad_safety_and_tol():
    X, y = mini(50)
    obj = hv.Objective(hv.MLP((784, 4, 1)), "l2")
    with pytest.raises(ValueError, match=r"^safety: expected a factor >= 1, got 0.5"):
        stepsize.curvature_bound(obj, X, y, BOUNDS, safety=0.5)
    with pytest.raises(ValueError, match=r"^tol: expected "):
        stepsize.top_eigenvalue(obj.at(obj.model.init(0), X, y, 0.0), tol=-1.0)


def test_curvature_names_a_bad_w_or_x():
    X, y = mini(50)
    obj = hv.Objective(hv.LR(784), "l2")
    with pytest.raises(ValueError, match=r"^w: expected shape \(785,\)"):
        stepsize.curvature(obj, np.zeros(784), X, y, -2.0)
    with pytest.raises(ValueError, match=r"^w: expected finite values"):
        stepsize.curvature(obj, np.full(785, np.nan), X, y, -2.0)
    with pytest.raises(ValueError, match=r"^X: expected shape \(n, 784\)"):
        stepsize.curvature(obj, np.zeros(785), X[:, :700], y, -2.0)


def test_auto_eta_is_c_over_L_and_the_table():
    X, y = mini(1000)
    obj = hv.Objective(hv.LR(784), "l2")
    L = stepsize.curvature_bound(obj, X, y, BOUNDS)
    assert stepsize.auto_eta(obj, X, y, BOUNDS) == pytest.approx(stepsize.C / L, rel=1e-12)
    assert stepsize.auto_eta(obj, X, y, BOUNDS, c=1.4) == pytest.approx(1.4 / L, rel=1e-12)
    (row,) = task_table(tasks=["mnist-mini"])
    assert row["L"] == pytest.approx(row["L_data"] + math.exp(4.0), rel=1e-12)
    assert row["auto_eta"] == pytest.approx(1.0 / row["L"]) and row["eta"] == 0.1
    assert row["eta_L"] == pytest.approx(0.1 * row["L"])
    assert row["lam_max"] == pytest.approx(math.log(2 / 0.1 - row["L_data"]))
    assert "| mnist-mini |" in format_task_table([row])


# -- gradient descent at auto_eta over the lam bounds --------------------------------------
def train_grid(name, kind, penalty, c, lams=LAMS):
    """Eq. 6 for ``T[kind]`` steps at ``eta = c / L`` from ``initW`` for each ``lam``:
    ``(eta, {lam: (w_T or None if it diverged, L(w_0), L(w_T))}, ||grad l(w_0)||_inf, w0)``."""
    X, y = data_or_skip(name)
    model = model_for(kind, X.shape[1])
    obj = hv.Objective(model, penalty)
    eta = c / stepsize.curvature_bound(obj, X, y, BOUNDS)
    w0 = model.init(0)
    g0 = float(np.abs(hv.Objective(model, None).grad(w0, X, y)).max())
    out = {}
    for lam in lams:
        try:
            wT = hv.unroll(obj, w0, X, y, lam, T[kind], eta)
        except hv.DivergenceError:
            out[lam] = (None, None, None)
            continue
        out[lam] = (wT, float(obj.loss(w0, X, y, lam)), float(obj.loss(wT, X, y, lam)))
    return eta, out, g0, w0


def failures(penalty, eta, out, g0, w0):
    """The ``lam`` that failed, with why. Every ``lam``: no DivergenceError, a finite loss.
    L2: ``L(w_T) <= L(w_0)``. L1 (subgradient steps, no curvature): ``L(w_T) <= L(w_0)``
    while ``e^lam <= |grad l(w_0)|_inf / e`` (the data drives training); where ``e^lam >=
    e |grad l(w_0)|_inf`` the weights only circle in the subgradient's limit cycle,
    ``|w_T|_inf <= |w_0|_inf + 2 eta e^lam`` (the loss must rise there for LR: ``w = 0`` is
    the optimum and GD leaves it)."""
    bad = []
    for lam, (wT, l0, l1) in out.items():
        if wT is None:
            bad.append((lam, "DivergenceError"))
        elif not math.isfinite(l1):
            bad.append((lam, f"loss {l1}"))
        elif penalty == "l2" or math.exp(lam) <= g0 / math.e:
            if l1 > l0:
                bad.append((lam, f"loss rose {l0:.4g} -> {l1:.4g}"))
        elif math.exp(lam) >= math.e * g0:
            cap = float(np.abs(w0).max()) + 2 * eta * math.exp(lam)
            if float(np.abs(wT).max()) > cap:
                bad.append((lam, f"|w_T|_inf = {float(np.abs(wT).max()):.3g} > {cap:.3g}"))
    return bad


@pytest.mark.slow
@pytest.mark.parametrize("penalty", ["l2", "l1"])
@pytest.mark.parametrize("kind", ["lr", "mlp"])
@pytest.mark.parametrize("name", DATA)
def test_auto_eta_trains_every_lam_in_the_bounds(name, kind, penalty):
    eta, out, g0, w0 = train_grid(name, kind, penalty, stepsize.C)
    assert failures(penalty, eta, out, g0, w0) == []


@pytest.mark.slow
@pytest.mark.parametrize("name, kind, penalty, c, lam", [
    ("uniform784", "lr", "l2", 2.5, 4.0),    # 2.5 / L: past the limit at w = 0 (loss rises)
    ("uniform784", "lr", "l1", 2.5, -10.0),  # eta L_data = 2.5 along the mean direction
    ("mnist-mini", "mlp", "l2", 3.0, 4.0),   # eta e^4 > 2 once the weights have shrunk
    ("mnist-mini", "mlp", "l1", 2.5, 4.0),   # subgradient moves eta e^4 = 1.8 blow it up
])
def test_the_checks_catch_a_too_large_step(name, kind, penalty, c, lam):
    eta, out, g0, w0 = train_grid(name, kind, penalty, c, (lam,))
    assert failures(penalty, eta, out, g0, w0) != []


@pytest.mark.slow
def test_mlp_curvature_along_training_stays_below_the_bound():
    """:data:`~hvpoison.stepsize.MLP_SAFETY` covers the sharpening along GD on real data
    (measured: up to 1.33x on this subset, at a step twice as long)."""
    X, y = dataset("mnist-mini")
    model = hv.MLP((784, 32, 16, 1))
    obj = hv.Objective(model, None)
    for seed in (0, 1):
        w = model.init(seed)
        L = stepsize.curvature_bound(obj, X, y, BOUNDS, w0=w)
        eta = stepsize.auto_eta(obj, X, y, BOUNDS, w0=w)
        for _ in range(5):
            w = hv.unroll(obj, w, X, y, None, 10, eta)
            assert stepsize.top_eigenvalue(obj.at(w, X, y)) <= L


# -- eta="auto" through train, unroll, GD, attack and the experiments ---------------------
def _mini(n_tr=120):
    from hvpoison.data import load_task

    return load_task("mnist-mini", n_tr=n_tr, n_test=100, seed=0)


def test_train_and_unroll_take_eta_auto_at_their_lam():
    s = _mini()
    obj = hv.Objective(hv.LR(784), "l2")
    for lam in (-10.0, 4.0, 8.0):       # 8: beyond the bounds too, e^8 = 2981
        eta = auto_eta(obj, s.Xtr, s.ytr, (lam - 1.0, lam))
        w = hv.train(obj, s.Xtr, s.ytr, lam, T=50, eta="auto")
        np.testing.assert_array_equal(w, hv.train(obj, s.Xtr, s.ytr, lam, T=50, eta=eta))
        np.testing.assert_array_equal(
            w, hv.unroll(obj, np.zeros(785), s.Xtr, s.ytr, lam, 50, "auto"))
        np.testing.assert_array_equal(w, hv.GD(50, "auto").fit(obj, s.Xtr, s.ytr, lam))
    with pytest.raises(hv.DivergenceError):                 # what "auto" keeps away
        hv.train(obj, s.Xtr, s.ytr, 8.0, T=50, eta=0.1)


def test_attack_resolves_eta_auto_once_over_the_lam_bounds():
    s = _mini()
    obj = hv.Objective(hv.LR(784), "l2")
    kw = dict(n_poison=6, n_batches=1, iters=4, T=30, lam=3.5, alpha_lam=1.0)
    learned = hv.attack(obj, s.Xtr, s.ytr, s.Xval, s.yval, eta="auto", learn_lam=True,
                        lam_bounds=(-10.0, 4.0), **kw)
    bound = auto_eta(obj, s.Xtr, s.ytr, (-10.0, 4.0))
    assert [b.trace["eta"] for b in learned] == [bound, bound]
    fixed = hv.attack(obj, s.Xtr, s.ytr, s.Xval, s.yval, eta="auto", **kw)
    assert fixed[-1].trace["eta"] == auto_eta(obj, s.Xtr, s.ytr, (2.5, 3.5))
    # the same run with that number: the same points
    again = hv.attack(obj, s.Xtr, s.ytr, s.Xval, s.yval, eta=bound, learn_lam=True,
                      lam_bounds=(-10.0, 4.0), **kw)
    np.testing.assert_array_equal(again[-1].X, learned[-1].X)


@pytest.mark.parametrize("bad, match", [
    ("fast", "eta: expected a positive number or 'auto'"),
    (0.0, "eta: expected a positive finite number"),
])
def test_a_bad_eta_names_it(bad, match):
    with pytest.raises(ValueError, match=match):
        hv.GD(10, bad)


def test_experiments_take_eta_auto_and_test_with_the_attacks_step(tmp_path):
    from hvpoison.experiments import Experiment, run

    exp = {"name": "auto", "repetitions": 1, "seed": 1,
           "data": {"task": "mnist-mini", "n_tr": 100, "n_test": 100},
           "defense": {"settings": ["none", "learned"]},
           "attack": {"n_poison": 10, "n_batches": 1, "iters": 3, "T": 20, "eta": "auto"},
           "test": {"T": 20, "eta": "auto", "kuncheva_k": [20]}}
    assert Experiment.from_dict(exp).attack.eta == "auto"
    run(exp, tmp_path, progress=False)
    import json

    recs = [json.loads(p.read_text()) for p in sorted((tmp_path / "records").glob("*.json"))]
    assert {r["setting"] for r in recs} == {"none", "learned"}
    for r in recs:
        assert r["eta"]["attack"] == r["eta"]["test"] > 0
    with pytest.raises(ValueError, match="attack.eta: expected float or 'auto', got 'fast'"):
        Experiment.from_dict({**exp, "attack": {**exp["attack"], "eta": "fast"}})
