"""CUDA kernels (issue #5): every .cu compiles with nvcc (when nvcc is on PATH), every kernel
has a reference of the same signature, the dispatch picks the reference on the CPU and can be
switched off; on a GPU (marked ``gpu``) every kernel matches its reference and the engine's
derivatives match the CPU's."""
import importlib
import importlib.util
import inspect
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import hvpoison as hv
from hvpoison import ops

ROOT = Path(__file__).resolve().parents[1]
CU = sorted((ROOT / "kernels").glob("*.cu"))


def _kernels():
    """``hvpoison.kernels`` (installed), else the source folder (a plain checkout)."""
    try:
        return importlib.import_module("hvpoison.kernels")
    except ImportError:
        spec = importlib.util.spec_from_file_location("hvpoison_kernels_src",
                                                      ROOT / "kernels" / "__init__.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod


K = _kernels()
INSTALLED = K.__name__ == "hvpoison.kernels"       # not the source-folder fallback
needs_installed = pytest.mark.skipif(not INSTALLED, reason="hvpoison.kernels is not "
                                     "installed (a plain checkout: pip install .)")


def _gpu():
    try:
        cupy = importlib.import_module("cupy")
        return cupy if cupy.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:  # noqa: BLE001 - no cupy, no driver, no device
        return None


CUPY = _gpu()


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
@pytest.mark.parametrize("cu", CU, ids=lambda p: p.name)
@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])
def test_every_cu_file_compiles_with_nvcc(cu, arch, tmp_path):
    r = subprocess.run(["nvcc", "-std=c++14", "-DHVPOISON_INSTANTIATE", f"-arch={arch}", "-ptx",
                        str(cu), "-o", str(tmp_path / "k.ptx")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ptx = (tmp_path / "k.ptx").read_text()
    for name, f in K.SOURCES.items():                 # both instantiations are in the PTX
        if f == cu.name:
            assert ptx.count(f"{len(name)}{name}I") >= 2, (name, "float and double")


@needs_installed
def test_an_unusable_numba_warns_and_the_references_run(monkeypatch):
    import sys
    import types

    broken = types.ModuleType("numba")

    def njit(**kw):
        raise RuntimeError("cannot cache function: no locator available")

    broken.njit = njit
    monkeypatch.setitem(sys.modules, "numba", broken)
    monkeypatch.delitem(sys.modules, "hvpoison.kernels.cpu", raising=False)
    monkeypatch.delattr(K, "cpu", raising=False)
    K.cpu_twins.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="numba twins disabled.*no locator"):
            assert K.cpu_twins() == {}
        assert ops.impl("sigmoid_ce", np) is ops.REFERENCE["sigmoid_ce"]
    finally:
        K.cpu_twins.cache_clear()


def test_every_kernel_has_a_source_and_a_reference_with_its_signature():
    assert {p.name for p in CU} == set(K.SOURCES.values())
    for name, f in K.SOURCES.items():
        assert f"void {name}(" in (ROOT / "kernels" / f).read_text(), name
        ref = ops.REFERENCE.get(name)
        if ref is not None:
            assert inspect.signature(getattr(K, name)) == inspect.signature(ref), name


def test_dispatch_picks_twins_on_the_cpu_and_can_be_switched_off(monkeypatch):
    monkeypatch.delenv("HVPOISON_KERNELS", raising=False)
    assert K.enabled()
    for name, ref in ops.REFERENCE.items():   # a twin when numba is there, else the reference
        assert ops.impl(name, np) is K.cpu_twins().get(name, ref)
    monkeypatch.setattr(K, "cpu_twins", lambda: {})
    for name, ref in ops.REFERENCE.items():
        assert ops.impl(name, np) is ref
    monkeypatch.setenv("HVPOISON_KERNELS", "0")
    assert not K.enabled()
    with K.use_kernels(True):
        assert K.enabled()
    assert not K.enabled()


def test_without_numba_the_references_run(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "numba", None)          # ``import numba`` fails
    monkeypatch.delitem(sys.modules, "hvpoison.kernels.cpu", raising=False)
    monkeypatch.delattr(K, "cpu", raising=False)
    K.cpu_twins.cache_clear()
    try:
        assert K.cpu_twins() == {}
        for name, ref in ops.REFERENCE.items():
            assert ops.impl(name, np) is ref
        obj = hv.Objective(hv.MLP((5, 3, 1)), penalty="l2")
        rng = np.random.default_rng(0)
        g = obj.grad(obj.model.init(0), rng.normal(size=(9, 5)), rng.random(9) < 0.5, -1.0)
        assert g.shape == (obj.model.n_params,) and np.isfinite(g).all()
    finally:
        K.cpu_twins.cache_clear()


def test_references_compute_what_the_engine_used_to():
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=101) * 30, (rng.random(101) < 0.5).astype(float)
    loss, r, c = ops.sigmoid_ce(np, z, y)
    p = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(r, (p - y) / 101, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(c, p * (1 - p) / 101, rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(loss, np.mean(np.logaddexp(0, z) - y * z), rtol=1e-13)
    Z, b = rng.normal(size=(7, 5)), rng.normal(size=5)
    D, A = ops.bias_leaky_relu(np, Z.copy(), b, 0.1)
    np.testing.assert_array_equal(A, np.where(Z + b > 0, Z + b, 0.1 * (Z + b)))
    Xp, g = rng.random((3, 4)), rng.normal(size=(3, 4))
    out = ops.ascent_project(np, Xp.copy(), g, 0.5, 0.0, 1.0)
    np.testing.assert_array_equal(out, np.clip(Xp + 0.5 * g, 0, 1))


# -- numba twins (CPU) ------------------------------------------------------------------------
NUMBA = importlib.util.find_spec("numba") is not None
needs_numba = pytest.mark.skipif(not (NUMBA and INSTALLED), reason="numba is not installed "
                                 "(pip install hvpoison[numba]), or hvpoison.kernels is not "
                                 "(a plain checkout); the references run instead")
TWIN_SIZES = [1, 7, 255, 257, 1000]
TOL = {np.float32: dict(rtol=2e-6, atol=1e-30), np.float64: dict(rtol=1e-13, atol=1e-300)}


@needs_numba
def test_every_twin_has_its_references_signature():
    from hvpoison.kernels import cpu

    assert set(cpu.TWINS) <= set(ops.REFERENCE)
    for name, twin in cpu.TWINS.items():
        assert inspect.signature(twin) == inspect.signature(ops.REFERENCE[name]), name


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", TWIN_SIZES)
@pytest.mark.parametrize("with_loss", [True, False])
def test_sigmoid_ce_twin_matches_reference(n, dtype, with_loss):
    from hvpoison.kernels import cpu

    rng = np.random.default_rng(n)
    z = (rng.normal(size=2 * n) * 20).astype(dtype)[::2]       # strided, and large |z|
    z[0] = 800 if n > 1 else -800                               # exp(-z) over/underflows
    if n > 1:
        z[1] = -800
    y = (rng.random(n) < 0.5).astype(dtype)
    ref, twin = ops.sigmoid_ce(np, z, y, with_loss), cpu.sigmoid_ce(np, z, y, with_loss)
    eps = np.finfo(dtype).eps       # the reference's 1 - p cancels when p ~ 1: absolute eps / n
    for a, b in zip(ref[1:], twin[1:]):
        assert b.dtype == dtype and b.shape == (n,)
        np.testing.assert_allclose(b, a, rtol=TOL[dtype]["rtol"], atol=4 * eps / n)
    if with_loss:
        np.testing.assert_allclose(twin[0], ref[0], rtol=TOL[dtype]["rtol"] * 10)
    else:
        assert twin[0] is None


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (257, 33), (1000, 16)])
def test_layer_and_step_twins_match_reference(shape, dtype):
    from hvpoison.kernels import cpu

    rng = np.random.default_rng(shape[0])
    big = rng.normal(size=(shape[0], 2 * shape[1])).astype(dtype)
    b = rng.normal(size=shape[1]).astype(dtype)
    Z_ref, Z_twin = big[:, ::2].copy(), big.copy()[:, ::2]      # the twin also gets a view
    D_ref, A_ref = ops.bias_leaky_relu(np, Z_ref, b, 0.01)
    D, A = cpu.bias_leaky_relu(np, Z_twin, b, 0.01)
    for x, y_ in ((Z_twin, Z_ref), (D, D_ref), (A, A_ref)):     # Z was biased in place too
        assert x.dtype == dtype
        np.testing.assert_array_equal(x, y_)
    Xp = rng.random(shape).astype(dtype)
    g = rng.normal(size=shape).astype(dtype)
    ref = ops.ascent_project(np, Xp.copy(), g, 0.7, 0.0, 1.0)
    out = Xp.copy()
    assert cpu.ascent_project(np, out, g, 0.7, 0.0, 1.0) is out  # in place
    np.testing.assert_array_equal(out, ref)
    out = Xp.copy()                       # Alg. 2 passes alpha / ||g|| as a 0-d array
    cpu.ascent_project(np, out, g, np.asarray(0.7, dtype=dtype), 0.0, 1.0)
    np.testing.assert_array_equal(out, ref)


@needs_numba
@pytest.mark.parametrize("model", [hv.LR(6), hv.MLP((6, 5, 3, 1))], ids=repr)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_engine_with_twins_matches_the_references(model, dtype):
    obj = hv.Objective(model, penalty="l2", per_layer=isinstance(model, hv.MLP))
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(11, 6)).astype(dtype), (rng.random(11) < 0.5)
    w = model.init(0, dtype=dtype) + dtype(0.1) * rng.normal(size=model.n_params).astype(dtype)
    lam = -np.ones(obj.n_lam) if obj.per_layer else -1.0
    v = rng.normal(size=model.n_params).astype(dtype)

    def products():
        pt = obj.at(w, X, y, lam)
        Hv, MX, Ml = pt.hvp_mixed(v, rows=np.array([2, 5]))
        return [pt.loss(), pt.grad(), Hv, MX, Ml]

    with K.use_kernels(True):
        assert ops.impl("sigmoid_ce", np) is K.cpu_twins()["sigmoid_ce"]
        fast = products()
    with K.use_kernels(False):
        slow = products()
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=50 * np.finfo(dtype).eps, atol=1e-30)


# -- on a GPU ---------------------------------------------------------------------------------
SIZES = [1, 7, 255, 257, 1000, 100_003]


@pytest.mark.gpu
@pytest.mark.skipif(CUPY is None, reason="needs cupy and an NVIDIA GPU")
@pytest.mark.parametrize("dtype, rtol", [(np.float32, 2e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("n", SIZES)
def test_sigmoid_ce_kernel_matches_reference(n, dtype, rtol):
    rng = np.random.default_rng(n)
    z = CUPY.asarray((rng.normal(size=n) * 20).astype(dtype))
    y = CUPY.asarray((rng.random(n) < 0.5).astype(dtype))
    for got, want in zip(K.sigmoid_ce(CUPY, z, y), ops.sigmoid_ce(CUPY, z, y)):
        np.testing.assert_allclose(CUPY.asnumpy(got), CUPY.asnumpy(want), rtol=rtol,
                                   atol=10 * np.finfo(dtype).tiny)


@pytest.mark.gpu
@pytest.mark.skipif(CUPY is None, reason="needs cupy and an NVIDIA GPU")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (257, 33), (1000, 100)])
def test_layer_and_step_kernels_match_reference(shape, dtype):
    rng = np.random.default_rng(shape[0])
    Z = CUPY.asarray(rng.normal(size=shape).astype(dtype))
    b = CUPY.asarray(rng.normal(size=shape[1]).astype(dtype))
    Z1, Z2 = Z.copy(), Z.copy()
    for got, want in zip(K.bias_leaky_relu(CUPY, Z1, b, 0.01), ops.bias_leaky_relu(CUPY, Z2, b, 0.01)):
        np.testing.assert_array_equal(CUPY.asnumpy(got), CUPY.asnumpy(want))
    np.testing.assert_array_equal(CUPY.asnumpy(Z1), CUPY.asnumpy(Z2))
    g = CUPY.asarray(rng.normal(size=shape).astype(dtype))
    r = ops.ascent_project(CUPY, Z.copy(), g, 0.3, -0.5, 0.5)
    for scale in (0.3, CUPY.asarray(0.3, dtype=dtype)):     # a float, or 0-d on the device
        a = K.ascent_project(CUPY, Z.copy(), g, scale, -0.5, 0.5)
        np.testing.assert_allclose(CUPY.asnumpy(a), CUPY.asnumpy(r),
                                   rtol=np.finfo(dtype).eps * 4)


@pytest.mark.gpu
@pytest.mark.skipif(CUPY is None, reason="needs cupy and an NVIDIA GPU")
@pytest.mark.parametrize("penalty", ["l2", "l1"])
@pytest.mark.parametrize("per_layer", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_engine_on_the_gpu_matches_the_cpu_with_and_without_kernels(penalty, per_layer, dtype):
    """The derivative contract on cupy arrays (kernels on and off) equals numpy's."""
    rng = np.random.default_rng(1)
    model = hv.MLP((13, 9, 5, 1), slope=0.1)
    obj = hv.Objective(model, penalty, per_layer=per_layer)
    X = rng.normal(size=(257, 13)).astype(dtype)
    y = (rng.random(257) < 0.5).astype(dtype)
    w, v = (rng.normal(size=(2, model.n_params)) * 0.5).astype(dtype)
    lam = np.full(3, -1.0, dtype) if per_layer else -1.0
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    want = obj.at(w, X, y, lam)
    want = (want.loss(), want.grad(), *want.hvp_mixed(v, rows=np.arange(0, 257, 5)))
    for on in (True, False):
        with K.use_kernels(on):
            lam_g = CUPY.asarray(lam) if per_layer else lam
            pt = obj.at(CUPY.asarray(w), CUPY.asarray(X), CUPY.asarray(y), lam_g)
            got = (pt.loss(), pt.grad(), *pt.hvp_mixed(CUPY.asarray(v),
                                                        rows=CUPY.arange(0, 257, 5)))
            for a, b in zip(got, want):
                np.testing.assert_allclose(CUPY.asnumpy(a), b, rtol=rtol, atol=rtol * 1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(CUPY is None, reason="needs cupy and an NVIDIA GPU")
def test_rmd_and_attack_on_the_gpu_match_the_cpu():
    rng = np.random.default_rng(2)
    X, y = rng.random((200, 30)), (rng.random(200) < 0.5).astype(float)
    Xv, yv = rng.random((40, 30)), (rng.random(40) < 0.5).astype(float)
    obj, rows = hv.Objective(hv.LR(30), "l2"), np.arange(8)
    want = hv.rmd(obj, np.zeros(31), X, y, rows, Xv, yv, -2.0, 50, 0.5)
    c = CUPY.asarray
    got = hv.rmd(obj, CUPY.zeros(31), c(X), c(y), c(rows), c(Xv), c(yv), -2.0, 50, 0.5)
    np.testing.assert_allclose(CUPY.asnumpy(got.dXp), want.dXp, rtol=1e-9)
    np.testing.assert_allclose(float(got.dlam), float(want.dlam), rtol=1e-9)
    a = hv.attack(obj, X, y, Xv, yv, n_poison=8, n_batches=1, iters=3, T=30, lam=-2.0,
                  learn_lam=True, seed=0)
    b = hv.attack(obj, c(X), c(y), c(Xv), c(yv), n_poison=8, n_batches=1, iters=3, T=30,
                  lam=-2.0, learn_lam=True, seed=0)
    np.testing.assert_allclose(CUPY.asnumpy(b[-1].X), a[-1].X, rtol=1e-8)
    mlp = hv.Objective(hv.MLP((30, 8, 1)), "l1")      # train() draws w0 on X's device
    w_cpu = hv.train(mlp, X, y, -4.0, T=20, eta=0.5, seed=3)
    w_gpu = hv.train(mlp, c(X), c(y), -4.0, T=20, eta=0.5, seed=3)
    np.testing.assert_allclose(CUPY.asnumpy(w_gpu), w_cpu, rtol=1e-8, atol=1e-12)
    assert hv.error(mlp.model, w_gpu, c(X), c(y)) == hv.error(mlp.model, w_cpu, X, y)


@pytest.mark.gpu
@pytest.mark.skipif(CUPY is None, reason="needs cupy and an NVIDIA GPU")
@pytest.mark.parametrize("model", [hv.LR(30), hv.MLP((30, 8, 1))], ids=repr)
@pytest.mark.parametrize("per_layer", [False, True])
def test_attack_hyperiterations_never_wait_for_the_gpu(model, per_layer, monkeypatch):
    """Alg. 2's loop (RMD forward/reverse, [A6], [A7]) under ``cupyx.allow_synchronize(False)``
    (HVPOISON_CHECK_SYNC=1): a host round-trip inside it raises DeviceSynchronized."""
    import cupyx

    if not hasattr(cupyx, "allow_synchronize"):
        pytest.skip("this cupy has no cupyx.allow_synchronize to detect waits with")
    monkeypatch.setenv("HVPOISON_CHECK_SYNC", "1")
    rng = np.random.default_rng(3)
    c = CUPY.asarray
    X, y = c(rng.random((120, 30))), c((rng.random(120) < 0.5).astype(float))
    Xv, yv = c(rng.random((30, 30))), c((rng.random(30) < 0.5).astype(float))
    obj = hv.Objective(model, "l2", per_layer=per_layer and isinstance(model, hv.MLP))
    lam = np.full(obj.n_lam, -3.0) if obj.per_layer else -3.0
    out = hv.attack(obj, X, y, Xv, yv, n_poison=6, n_batches=2, iters=3, T=20, lam=lam,
                    learn_lam=True, seed=0)
    assert len(out[-1].trace["outer"]) == 3
    with pytest.raises(cupyx.DeviceSynchronized):     # the check does fire on a wait
        hv.attack(obj, X, y, Xv, yv, n_poison=6, n_batches=1, iters=2, T=5, lam=lam,
                  learn_lam=True, seed=0, callback=lambda *a: None)
