"""The cupy branch of every public entry point, run on the CPU through a numpy-backed
stand-in for cupy (``tests/cupy_standin.py``; issue #30), with the CUDA kernels off: the
results equal numpy's to rounding and **stay device arrays**, nothing mixes host and device
arrays silently, and Alg. 2's hyperiterations never wait for the device.

The stand-in runs in CI (no GPU needed). Where cupy sees a GPU, the same tests also run on
it (marked ``gpu``), with the CUDA kernels off and on (numpy's side then runs its numba
twins: both sides agree to rounding).
"""
import importlib

import numpy as np
import pytest

import cupy_standin
import hvpoison as hv
from hvpoison import ops

K = ops._kernels()


def _real_cupy():
    try:
        cupy = importlib.import_module("cupy")
        return cupy if cupy.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:  # noqa: BLE001 - no cupy, no driver, no device
        return None


CUPY = _real_cupy()
_ON_GPU = [pytest.mark.gpu, pytest.mark.skipif(CUPY is None, reason="needs cupy and an NVIDIA GPU")]


@pytest.fixture(params=[pytest.param(("standin", False), id="standin"),
                        pytest.param(("gpu", False), id="gpu-ref", marks=_ON_GPU),
                        pytest.param(("gpu", True), id="gpu-kernels", marks=_ON_GPU)])
def cp(request):
    """The array module under test: the stand-in as ``cupy`` (kernels off: it has none;
    numpy's side runs with them off too, so both take the references' arithmetic), or the
    real cupy on a GPU with the kernels off or on."""
    where, kernels = request.param
    if where == "standin":
        with cupy_standin.installed() as cupy, K.use_kernels(False):
            yield cupy
    else:
        with K.use_kernels(kernels):
            yield CUPY


def is_device(a):
    return type(a).__module__.split(".")[0] == "cupy" and not isinstance(a, np.ndarray)


def close(got, want, rtol):
    assert is_device(got), f"a host {type(got).__name__} came back from device inputs"
    np.testing.assert_allclose(got.get(), want, rtol=rtol, atol=rtol * 1e-3)


def problem(model, n=64, m=24, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    d = model.n_features
    X, Xv = rng.random((n, d)).astype(dtype), rng.random((m, d)).astype(dtype)
    y, yv = (rng.random(n) < 0.5).astype(dtype), (rng.random(m) < 0.5).astype(dtype)
    w = (0.3 * rng.normal(size=model.n_params)).astype(dtype)
    V = rng.normal(size=(model.n_params, 3)).astype(dtype)
    return X, y, Xv, yv, w, V


MODELS = [hv.LR(12), hv.MLP((12, 6, 4, 1))]
RTOL = {np.float64: 1e-10, np.float32: 2e-4}


# -- the stand-in keeps cupy's contract ------------------------------------------------------
def test_the_standin_refuses_silent_mixing_and_counts_every_wait(cp):
    if not getattr(cp, "STANDIN", False):
        pytest.skip("a property of the stand-in")
    a = cp.asarray(np.arange(6.0).reshape(2, 3))
    assert hv.get_array_module(a) is cp and not isinstance(a, np.ndarray)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(a)
    with pytest.raises(TypeError, match="numpy array"):
        a + np.ones(3)
    with pytest.raises(TypeError, match="numpy array"):
        cp.stack([a[0], np.ones(3)])
    assert is_device(a.sum()) and is_device(np.exp(a)) and is_device(a @ a.T)
    assert is_device(cp.linalg.norm(a)) and is_device(a[0, 0])
    cupy_standin.reset()
    float(a.sum()), bool(a[0, 0] > 0), a.get(), cp.asnumpy(a), a[a > 2]
    assert cupy_standin.transfers["d2h"] == 5
    import cupyx

    with cupyx.allow_synchronize(False):
        b = (a * 2).sum()                          # queued work: no wait
        with pytest.raises(cupyx.DeviceSynchronized):
            float(b)


# -- the derivative contract ------------------------------------------------------------------
@pytest.mark.parametrize("model", MODELS, ids=repr)
@pytest.mark.parametrize("penalty, per_layer", [("l2", False), ("l1", False), ("l2", True)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_objective_products_on_device_equal_numpy(cp, model, penalty, per_layer, dtype):
    obj = hv.Objective(model, penalty, per_layer=per_layer and isinstance(model, hv.MLP))
    X, y, _, _, w, V = problem(model, dtype=dtype)
    lam = np.full(obj.n_lam, -1.5, dtype) if obj.per_layer else -1.5
    c, rows, rtol = cp.asarray, np.arange(0, 64, 7), RTOL[dtype]
    lam_d = c(lam) if obj.per_layer else lam
    want, got = obj.at(w, X, y, lam), obj.at(c(w), c(X), c(y), lam_d)
    close(got.loss(), want.loss(), rtol)
    close(got.grad(), want.grad(), rtol)
    for a, b in zip(got.hvp_mixed(c(V[:, 0]), rows=c(rows)), want.hvp_mixed(V[:, 0], rows=rows)):
        close(a, b, rtol)
    close(got.hvp_block(c(V)), want.hvp_block(V), rtol)
    close(obj.hvp(c(w), c(X), c(y), lam_d, c(V[:, 1])), obj.hvp(w, X, y, lam, V[:, 1]), rtol)
    data, data_d = obj.prepare(X, y, lam), obj.prepare(c(X), c(y), lam_d)
    for a, b in zip(obj.hvp_fresh(c(w), data_d, c(V), with_grad=True),
                    obj.hvp_fresh(w, data, V, with_grad=True)):
        close(a, b, rtol)
    close(obj.val_loss(c(w), c(X), c(y)), obj.val_loss(w, X, y), rtol)


# -- hypergradients ---------------------------------------------------------------------------
@pytest.mark.parametrize("model", MODELS, ids=repr)
@pytest.mark.parametrize("memory", ["store", "checkpoint", "reverse"])
def test_rmd_and_fmd_on_device_equal_numpy(cp, model, memory):
    obj = hv.Objective(model, "l2")
    X, y, Xv, yv, _, _ = problem(model)
    c, rows = cp.asarray, np.arange(5)
    w0 = model.init(1)
    want = hv.rmd(obj, w0, X, y, rows, Xv, yv, -2.0, 15, 0.3, memory=memory)
    got = hv.rmd(obj, c(w0), c(X), c(y), c(rows), c(Xv), c(yv), -2.0, 15, 0.3, memory=memory)
    close(got.dXp, want.dXp, 1e-10)
    close(got.dlam, want.dlam, 1e-10)
    close(got.info["w_T"], want.info["w_T"], 1e-10)
    assert got.value == pytest.approx(want.value, rel=1e-12)
    f_want = hv.fmd(obj, w0, X, y, None, Xv, yv, -2.0, 15, 0.3)
    f_got = hv.fmd(obj, c(w0), c(X), c(y), None, c(Xv), c(yv), -2.0, 15, 0.3)
    close(f_got.dlam, f_want.dlam, 1e-10)


def test_implicit_hypergrad_returns_device_arrays(cp):
    """Its default start ``model.init(0)`` was drawn on the host: with device data the
    hypergradient came back as a host array (or failed to mix)."""
    obj = hv.Objective(hv.LR(12), "l2")
    X, y, Xv, yv, _, _ = problem(obj.model)
    c, rows = cp.asarray, np.arange(5)
    want = hv.implicit_hypergrad(obj, X, y, rows, Xv, yv, -1.0)
    got = hv.implicit_hypergrad(obj, c(X), c(y), c(rows), c(Xv), c(yv), -1.0)
    close(got.dXp, want.dXp, 1e-7)
    close(got.dlam, want.dlam, 1e-7)
    close(got.info["w"], want.info["w"], 1e-7)
    u, info = hv.solve_hvp(lambda v: 2.0 * v, c(np.ones(5)), solver="cg")   # cupyx's cg
    close(u, np.full(5, 0.5), 1e-9)
    assert info["converged"]


# -- victims, training, evaluation -------------------------------------------------------------
@pytest.mark.parametrize("model", MODELS, ids=repr)
def test_training_and_evaluation_on_device_equal_numpy(cp, model):
    obj = hv.Objective(model, "l2")
    X, y, Xv, yv, _, _ = problem(model)
    c = cp.asarray
    close(hv.train(obj, c(X), c(y), -2.0, T=30, eta=0.3, seed=2),
          hv.train(obj, X, y, -2.0, T=30, eta=0.3, seed=2), 1e-10)
    close(hv.GD(30, 0.3).fit(obj, c(X), c(y), -2.0, seed=2),
          hv.GD(30, 0.3).fit(obj, X, y, -2.0, seed=2), 1e-10)
    for victim in (["gd", "exact"] if isinstance(model, hv.LR) else ["gd"]):
        want = hv.evaluate(obj, X, y, Xv, yv, -2.0, T=30, eta=0.3, victim=victim)
        got = hv.evaluate(obj, c(X), c(y), c(Xv), c(yv), -2.0, T=30, eta=0.3, victim=victim)
        close(got["w"], want["w"], 1e-8)
        assert got["test_error"] == want["test_error"]
        np.testing.assert_allclose(got["w_norm2"], want["w_norm2"], rtol=1e-8)
    if isinstance(model, hv.LR):
        close(hv.Exact().fit(obj, c(X), c(y), -2.0), hv.Exact().fit(obj, X, y, -2.0), 1e-8)


@pytest.mark.parametrize("model", MODELS, ids=repr)
def test_several_starts_trained_together_on_device_equal_numpy(cp, model):
    """``GD.fit_many`` (the MLP's blocked pass: its batched matmuls take the copy branch
    off numpy) stays on the device and equals numpy's."""
    obj = hv.Objective(model, "l2")
    X, y, _, _, w, _ = problem(model)
    W0 = np.stack([w, 0.5 * w, -w])
    c = cp.asarray
    close(hv.GD(30, 0.3).fit_many(obj, c(X), c(y), -2.0, W0=c(W0)),
          hv.GD(30, 0.3).fit_many(obj, X, y, -2.0, W0=W0), 1e-10)


# -- the attack ----------------------------------------------------------------------------------
CASES = [(hv.LR(12), "alg2", "gd"), (hv.LR(12), "strong", "gd"), (hv.LR(12), "strong", "exact"),
         (hv.MLP((12, 6, 4, 1)), "alg2", "gd"), (hv.MLP((12, 6, 4, 1)), "strong", "gd")]


@pytest.mark.parametrize("model, method, victim", CASES,
                         ids=[f"{m!r}-{a}-{v}" for m, a, v in CASES])
def test_attack_on_device_equals_numpy(cp, model, method, victim):
    obj = hv.Objective(model, "l2")
    X, y, Xv, yv, _, _ = problem(model)
    c = cp.asarray
    kw = dict(n_poison=4, n_batches=2, iters=3, T=15, eta=0.3, lam=-2.0,
              learn_lam=victim == "gd", seed=1, method=method, victim=victim)
    want = hv.attack(obj, X, y, Xv, yv, **kw)
    got = hv.attack(obj, c(X), c(y), c(Xv), c(yv), **kw)
    for a, b in zip(got, want):
        close(a.X, b.X, 1e-8)
        close(a.y, b.y, 0)
        np.testing.assert_array_equal(a.poison_idx, b.poison_idx)
        assert a.lam == pytest.approx(b.lam, rel=1e-10)
        np.testing.assert_allclose(a.trace["outer"], b.trace["outer"], rtol=1e-8)
        if a.X0 is not None:
            close(a.X0, b.X0, 0)


@pytest.mark.parametrize("model", MODELS, ids=repr)
@pytest.mark.parametrize("per_layer", [False, True])
def test_alg2_hyperiterations_never_wait_for_the_device(cp, model, per_layer, monkeypatch):
    """Alg. 2's loop ([A4]-[A7]) makes no device-to-host transfer until its batch ends: a
    batch of 6 hyperiterations makes as many as a batch of 1, and under
    ``HVPOISON_CHECK_SYNC=1`` (``cupyx.allow_synchronize(False)`` around the loop) it runs;
    a ``callback`` (which reads the values) makes the same check fire."""
    import cupyx

    if not hasattr(cupyx, "allow_synchronize"):
        pytest.skip("this cupy has no cupyx.allow_synchronize to detect waits with")
    obj = hv.Objective(model, "l2", per_layer=per_layer and isinstance(model, hv.MLP))
    X, y, Xv, yv, _, _ = problem(model)
    c = cp.asarray
    lam = c(np.full(obj.n_lam, -3.0)) if obj.per_layer else -3.0
    start = (0, c(X), c(y))             # batch 1 alone: no clean fraction 0

    def d2h(iters):
        cupy_standin.reset()
        hv.attack(obj, c(X), c(y), c(Xv), c(yv), n_poison=4, n_batches=1, iters=iters, T=10,
                  eta=0.3, lam=lam, learn_lam=True, seed=0, start=start)
        return cupy_standin.transfers["d2h"]

    if getattr(cp, "STANDIN", False):          # it counts the transfers
        assert d2h(6) == d2h(1)
    monkeypatch.setenv("HVPOISON_CHECK_SYNC", "1")
    out = hv.attack(obj, c(X), c(y), c(Xv), c(yv), n_poison=4, n_batches=2, iters=3, T=10,
                    eta=0.3, lam=lam, learn_lam=True, seed=0)
    assert len(out[-1].trace["outer"]) == 3
    with pytest.raises(cupyx.DeviceSynchronized):
        hv.attack(obj, c(X), c(y), c(Xv), c(yv), n_poison=4, n_batches=1, iters=2, T=5,
                  eta=0.3, lam=lam, learn_lam=True, seed=0, callback=lambda *a: None)


def test_step_sizes_exact_victim_and_helpers_on_device_equal_numpy(cp):
    """``eta="auto"`` (Lanczos on device ``H v``), the Exact victim's Woodbury path (``n <
    P / 2``: cupyx's triangular solves), ``unroll``, ``lam_cv``, ``error``, ``kuncheva``."""
    obj = hv.Objective(hv.LR(40), "l2")
    X, y, Xv, yv, w, _ = problem(obj.model, n=16)
    c = cp.asarray
    close(hv.train(obj, c(X), c(y), -2.0, T=10, eta="auto"),
          hv.train(obj, X, y, -2.0, T=10, eta="auto"), 1e-8)
    assert hv.stepsize.curvature(obj, c(w), c(X), c(y), -2.0) == pytest.approx(
        hv.stepsize.curvature(obj, w, X, y, -2.0), rel=1e-8)
    close(hv.Exact().fit(obj, c(X), c(y), -2.0), hv.Exact().fit(obj, X, y, -2.0), 1e-8)
    close(hv.unroll(obj, c(w), c(X), c(y), -2.0, T=5, eta=0.1),
          hv.unroll(obj, w, X, y, -2.0, T=5, eta=0.1), 1e-10)
    got, want = (hv.lam_cv(obj, A, b, [-2.0, 0.0], T=10, K=2) for A, b in ((c(X), c(y)), (X, y)))
    assert got[0] == want[0] and got[1] == pytest.approx(want[1], rel=1e-10)
    assert hv.error(obj.model, c(w), c(X), c(y)) == hv.error(obj.model, w, X, y)
    assert hv.kuncheva(c(w[:40]), c(Xv[0]), 5) == hv.kuncheva(w[:40], Xv[0], 5)
