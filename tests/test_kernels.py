"""CUDA kernels (issue #5) and the one kernel dispatch (issue #16): every .cu compiles with
nvcc (when nvcc is on PATH), every op has a reference of the same signature (the penalty
products of Eq. 1 included), :func:`hvpoison.ops.impl` picks a twin or the reference on the
CPU and can be switched off, a plain checkout finds ``kernels/`` as ``hvpoison.kernels``;
on a GPU (marked ``gpu``) every kernel matches its reference and the engine's derivatives
match the CPU's."""
import importlib
import importlib.util
import inspect
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hvpoison as hv
from hvpoison import ops

ROOT = Path(__file__).resolve().parents[1]
CU = sorted((ROOT / "kernels").glob("*.cu"))
K = ops._kernels()           # hvpoison.kernels: installed, or the checkout's kernels/ folder
assert K is not None and K.__name__ == "hvpoison.kernels", "kernels/ was not found"


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
    # every op (the penalty products included) has a wrapper launching a kernel of SOURCES
    # and a reference with the wrapper's signature; every kernel serves an op
    # except the CPU-only ops (a numba twin, the reference on the GPU)
    assert set(K.OPS) | K.CPU_ONLY == set(ops.REFERENCE) and not set(K.OPS) & K.CPU_ONLY
    assert set(K.OPS.values()) == set(K.SOURCES)
    for name in K.OPS:
        assert inspect.signature(getattr(K, name)) == inspect.signature(ops.REFERENCE[name]), name
    assert {"penalty_grad_add", "penalty_hvp_add", "penalty_mixed_lam"} <= set(ops.REFERENCE)


def test_dispatch_picks_twins_on_the_cpu_and_can_be_switched_off(monkeypatch):
    monkeypatch.delenv("HVPOISON_KERNELS", raising=False)
    assert K.enabled()
    for name in K.CPU_ONLY:              # any other array module (cupy): the reference
        assert ops.impl(name, object()) is ops.REFERENCE[name]
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


# -- the penalty products of Eq. 1 -----------------------------------------------------------
def _old_penalty(kind, slices):
    """``Penalty``'s products as they were before the one dispatch (issue 16): per slice."""
    omega = np.sign if kind == "l1" else (lambda wk: wk)

    def grad(w, e, out):
        for k, g in enumerate(slices):
            out[g] += e[k] * omega(w[g])

    def hvp(w, e, v, out):
        if kind == "l2":
            for k, g in enumerate(slices):
                out[g] += e[k] * v[g]

    def mixed(w, e, v):
        return np.stack([e[k] * (omega(w[g]) @ v[g]) for k, g in enumerate(slices)])

    return grad, hvp, mixed


def _penalty_point(model, dtype, seed=0):
    rng = np.random.default_rng(seed)
    P, G = model.n_params, model.n_layers
    w, v, base = rng.normal(size=(3, P)).astype(dtype)
    w[model.weight_slices[0].start] = 0                 # sign(0) = 0 at the kink
    return rng, w, v, base, np.exp(rng.normal(size=G)).astype(dtype)


@pytest.mark.parametrize("kind", ["l2", "l1"])
@pytest.mark.parametrize("model", [hv.LR(6), hv.MLP((6, 5, 3, 1))], ids=repr)  # 1, 3 groups
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_penalty_references_compute_what_the_penalty_used_to(kind, model, dtype):
    """Bit for bit (Alg. 2's golden run depends on it), through the references and through
    the dispatch of ``Penalty``'s methods, with kernels (twins) on."""
    from hvpoison.penalties import Penalty

    pen, l1 = Penalty(kind, model.weight_slices, model.n_params), kind == "l1"
    rng, w, v, base, e = _penalty_point(model, dtype)
    grad, hvp, mixed = _old_penalty(kind, model.weight_slices)
    want = base.copy()
    grad(w, e, want)
    with K.use_kernels(True):
        got = ops.penalty_grad_add(np, w, e, pen.groups, base.copy(), l1)
        np.testing.assert_array_equal(got, want)
        got = base.copy()
        pen.add_grad(np, w, e, got)
        np.testing.assert_array_equal(got, want)
        for V in (v, rng.normal(size=(model.n_params, 3)).astype(dtype)):   # Hv, H V
            want = rng.normal(size=V.shape).astype(dtype)
            got, ref = want.copy(), want.copy()
            hvp(w, e, V, want)
            pen.add_hvp(np, w, e, V, got)
            np.testing.assert_array_equal(got, want)
            if not l1:
                np.testing.assert_array_equal(ops.penalty_hvp_add(np, V, e, pen.groups, ref),
                                              want)
        want = mixed(w, e, v)
        assert want.shape == (model.n_layers,) and want.dtype == dtype
        np.testing.assert_array_equal(ops.penalty_mixed_lam(np, w, v, e, pen.groups, l1), want)
        np.testing.assert_array_equal(pen.mixed_lam(np, w, e, v), want)


def test_penalty_methods_go_through_the_dispatch(monkeypatch):
    from hvpoison.penalties import Penalty

    model = hv.MLP((4, 3, 1))
    rng, w, v, base, e = _penalty_point(model, np.float64)
    with K.use_kernels(True):         # no numba twin for them: the references on the CPU
        for name in ("penalty_grad_add", "penalty_hvp_add", "penalty_mixed_lam"):
            assert ops.impl(name, np) is ops.REFERENCE[name]
    calls, impl = [], ops.impl
    monkeypatch.setattr(ops, "impl", lambda name, xp: calls.append(name) or impl(name, xp))
    pen = Penalty("l2", model.weight_slices, model.n_params)
    pen.add_grad(np, w, e, base)
    pen.add_hvp(np, w, e, v, base)
    pen.mixed_lam(np, w, e, v)
    assert calls == ["penalty_grad_add", "penalty_hvp_add", "penalty_mixed_lam"]
    assert not hasattr(Penalty, "_kernel")


def test_penalty_groups_are_built_once_and_immutable():
    import dataclasses

    from hvpoison.penalties import Penalty

    model = hv.MLP((4, 3, 1))
    obj = hv.Objective(model, "l1", per_layer=True)
    G = obj.penalty.groups
    assert isinstance(G, ops.Groups) and len(G) == 2
    assert G.slices == tuple(model.weight_slices)
    want = np.full(model.n_params, -1)                 # -1: a bias, never penalised
    for k, g in enumerate(model.weight_slices):
        want[g] = k
    assert G.index.dtype == np.int32 and G.index_on(np) is G.index
    np.testing.assert_array_equal(G.index, want)
    with pytest.raises(ValueError):
        G.index[0] = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        G.slices = ()
    pt = obj.at(model.init(0), np.ones((3, 4)), np.array([0.0, 1.0, 1.0]), np.zeros(2))
    pt.grad()
    pt.hvp_mixed(np.ones(model.n_params))
    assert obj.penalty.groups is G
    # without n_params: up to the end of the last group (the last bias is left out)
    short = Penalty("l2", model.weight_slices).groups.index
    np.testing.assert_array_equal(short, want[:model.weight_slices[-1].stop])


# -- the kernels/ folder from a plain checkout ------------------------------------------------
PLAIN = """
import sys
sys.path[:] = [{root!r}] + [p for p in sys.path if p] + {site!r}
assert not any("__editable__" in getattr(f, "__module__", "") for f in sys.meta_path)
import numpy
from hvpoison import ops
twin = ops.impl("sigmoid_ce", numpy)
import hvpoison.kernels
for line in (ops.__file__, hvpoison.kernels.__file__, twin.__module__):
    print(line)
"""


def test_a_plain_checkout_finds_the_kernels_folder_and_the_twins(tmp_path):
    """``python -S`` with ``sys.path`` set by hand: no ``.pth`` file runs, so an editable
    install's finder is off and ``hvpoison`` is the repository's folder, as in a checkout
    that was never installed; ``kernels/`` must still load as ``hvpoison.kernels``."""
    code = PLAIN.format(root=str(ROOT), site=site.getsitepackages())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HVPOISON_KERNELS")}
    r = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    ops_file, kernels_file, twin = r.stdout.split()
    assert Path(ops_file) == ROOT / "hvpoison" / "ops.py"
    assert Path(kernels_file) == ROOT / "kernels" / "__init__.py"
    if not NUMBA:
        pytest.skip("numba is not installed: the checkout runs the references")
    assert twin == "hvpoison.kernels.cpu"


def test_without_the_kernels_folder_the_references_run(tmp_path):
    assert ops._load_folder(tmp_path / "kernels") is None
    here = Path(ops.__file__).resolve().parents[1]       # the checkout, or site-packages
    assert ops.KERNELS_DIR == here / "kernels"
    if here == ROOT:                                     # imported from this checkout
        assert (ops.KERNELS_DIR / "__init__.py").is_file()


# -- numba twins (CPU) ------------------------------------------------------------------------
NUMBA = importlib.util.find_spec("numba") is not None
needs_numba = pytest.mark.skipif(not NUMBA, reason="numba is not installed (pip install "
                                 "hvpoison[numba]); the references run instead")
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
    # a column-major Z, as mlp._xw's transposed GEMM gives: (n, 2 m) F-order, first half
    ZF = np.asfortranarray(big).reshape(shape[0], 2, shape[1])[:, 0]
    assert ZF.strides[0] < ZF.strides[1] or min(shape) == 1
    Z_ref = ZF.copy()
    D_ref, A_ref = ops.bias_leaky_relu(np, Z_ref, b, 0.01)
    D, A = cpu.bias_leaky_relu(np, ZF, b, 0.01)
    for x, y_ in ((ZF, Z_ref), (D, D_ref), (A, A_ref)):
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
    # the kernel's x + s g is one fused multiply-add (one rounding, the reference's two): a
    # difference of an ulp of the addends, not of a result near 0 (measured on an H200:
    # 2.8e-8 absolute, 1.6e-5 relative, in float32)
    ulps = 4 * np.finfo(dtype).eps * float(CUPY.abs(Z).max() + 0.3 * CUPY.abs(g).max())
    for scale in (0.3, CUPY.asarray(0.3, dtype=dtype)):     # a float, or 0-d on the device
        a = K.ascent_project(CUPY, Z.copy(), g, scale, -0.5, 0.5)
        np.testing.assert_allclose(CUPY.asnumpy(a), CUPY.asnumpy(r), rtol=0, atol=ulps)


@pytest.mark.gpu
@pytest.mark.skipif(CUPY is None, reason="needs cupy and an NVIDIA GPU")
@pytest.mark.parametrize("kind", ["l2", "l1"])
@pytest.mark.parametrize("n_groups", [1, 3, 33])          # 33: over the kernels' 32
@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_penalty_kernels_match_reference(kind, n_groups, dtype, rtol):
    sizes = [SIZES[k % 5] for k in range(n_groups)]      # a bias after every group
    starts = np.cumsum([0] + [s + 1 for s in sizes])
    groups = ops.Groups.of([slice(a, a + s) for a, s in zip(starts, sizes)], starts[-1])
    rng, c, l1 = np.random.default_rng(n_groups), CUPY.asarray, kind == "l1"
    w, v, base = (c(rng.normal(size=(3, starts[-1])).astype(dtype)))
    e = c(np.exp(rng.normal(size=n_groups)).astype(dtype))

    # out + e w is one fused multiply-add in the kernel: agreement to the addends' scale
    scale = float(CUPY.abs(base).max() + e.max() * CUPY.abs(w).max())

    def close(a, b):
        np.testing.assert_allclose(CUPY.asnumpy(a), CUPY.asnumpy(b), rtol=rtol,
                                   atol=4 * np.finfo(dtype).eps * scale)

    close(K.penalty_grad_add(CUPY, w, e, groups, base.copy(), l1),
          ops.penalty_grad_add(CUPY, w, e, groups, base.copy(), l1))
    for V in (v, c(rng.normal(size=(starts[-1], 3)).astype(dtype))):   # a block: reference
        close(K.penalty_hvp_add(CUPY, V, e, groups, V.copy()),
              ops.penalty_hvp_add(CUPY, V, e, groups, V.copy()))
    close(K.penalty_mixed_lam(CUPY, w, v, e, groups, l1),
          ops.penalty_mixed_lam(CUPY, w, v, e, groups, l1))


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


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (257, 255), (1001, 784), (4, 1 << 16)])
def test_lr_rop_twin_matches_reference(shape, dtype):
    """The fused R pass of LR (one read of ``X``): ragged row counts (``n % 4``), both
    sides of ``LR_FUSED_MIN``; a strided ``X`` or mixed dtypes run the reference."""
    from hvpoison.kernels import cpu

    rng = np.random.default_rng(shape[0])
    X = rng.normal(size=shape).astype(dtype)
    curv, v = rng.random(shape[0]).astype(dtype), rng.normal(size=shape[1] + 1).astype(dtype)
    ref_out, out = np.full(shape[1] + 1, np.nan, dtype), np.full(shape[1] + 1, np.nan, dtype)
    ref_Rs = ops.lr_rop(np, X, curv, v, ref_out)
    Rs = cpu.lr_rop(np, X, curv, v, out)
    assert Rs.dtype == out.dtype == dtype and Rs.shape == (shape[0],)
    tol = dict(rtol=2e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    scale = np.abs(ref_out).max()       # reassociated sums: agreement relative to the size
    np.testing.assert_allclose(out / scale, ref_out / scale, **tol)
    np.testing.assert_allclose(Rs, ref_Rs, **tol)
    g = np.empty(shape[1], dtype)                              # which path ran: the loop's bits
    ran_loop = np.array_equal(Rs, cpu._lr_rop(X, curv, v, v[-1], g)) and \
        np.array_equal(out[:-1], g)
    assert ran_loop == (X.size >= cpu.LR_FUSED_MIN) or np.array_equal(out, ref_out)
    F = np.asfortranarray(X)                                   # not C order: the reference
    np.testing.assert_array_equal(cpu.lr_rop(np, F, curv, v, out), ops.lr_rop(np, F, curv, v,
                                                                                ref_out))
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(cpu.lr_rop(np, X, curv.astype(np.float16), v, out),
                                  ops.lr_rop(np, X, curv.astype(np.float16), v, ref_out))


def twin_sized_lr(seed, n, d=256):
    """An L2-penalised LR problem (``obj``, ``X``, ``y``, ``w``, ``v``; ``lam = -1``) with
    ``X`` large enough for the ``lr_*`` twins, which the FD tests run through."""
    from hvpoison.kernels import cpu

    assert n * d >= cpu.LR_FUSED_MIN
    rng = np.random.default_rng(seed)
    X, y = rng.normal(size=(n, d)), (rng.random(n) < 0.5) * 1.0
    w, v = 0.1 * rng.normal(size=d + 1), rng.normal(size=d + 1)
    return hv.Objective(hv.LR(d), "l2"), X, y, w, v


def assert_hvp_matches_fd(obj, X, y, w, v, Hv, h=1e-5):
    """``Hv`` against central differences of the gradient (the references' path) along
    ``v``, at ``lam = -1``."""
    fd = (obj.grad(w + h * v, X, y, -1.0) - obj.grad(w - h * v, X, y, -1.0)) / (2 * h)
    assert np.linalg.norm(Hv - fd) <= 1e-7 * np.linalg.norm(fd)


@needs_numba
def test_lr_hvp_through_the_fused_twin_matches_finite_differences():
    """``H v`` of LR on a problem large enough for ``lr_rop``'s twin (``LR.rop`` runs it)
    against central differences of the gradient."""
    obj, X, y, w, v = twin_sized_lr(5, 300)
    with K.use_kernels(True):
        Hv = obj.at(w, X, y, -1.0).hvp(v)
    assert_hvp_matches_fd(obj, X, y, w, v, Hv)


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (257, 255), (1001, 784), (4, 1 << 16)])
def test_lr_forward_grad_twin_matches_reference(shape, dtype):
    """LR's forward pass, sigmoid unit and line 1 in one read of ``X``: ragged row counts,
    both sides of ``LR_FUSED_MIN``; a strided ``X`` or mixed dtypes run the reference."""
    from hvpoison.kernels import cpu

    rng = np.random.default_rng(shape[0])
    X = rng.normal(size=shape).astype(dtype)
    y = (rng.random(shape[0]) < 0.5).astype(dtype)
    w = (rng.normal(size=shape[1] + 1) / np.sqrt(shape[1])).astype(dtype)
    ref_out, out = np.full(shape[1] + 1, np.nan, dtype), np.full(shape[1] + 1, np.nan, dtype)
    ref = ops.lr_forward_grad(np, X, y, w, ref_out)
    got = cpu.lr_forward_grad(np, X, y, w, out)
    tol = dict(rtol=2e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    for a, b in zip(got, ref):                                 # z, residual, curv
        assert a.dtype == dtype and a.shape == (shape[0],)
        np.testing.assert_allclose(a / np.abs(b).max(), b / np.abs(b).max(), **tol)
    scale = np.abs(ref_out).max()
    np.testing.assert_allclose(out / scale, ref_out / scale, **tol)
    bufs = [np.empty(shape[0], dtype) for _ in range(3)]       # which path ran: the loop's bits
    g = np.empty(shape[1], dtype)
    cpu._lr_forward_grad(X, y, w[:-1], w[-1], dtype(1.0 / shape[0]), *bufs, g)
    ran_loop = all(np.array_equal(a, b) for a, b in zip(got, bufs)) and \
        np.array_equal(out[:-1], g)
    assert ran_loop == (X.size >= cpu.LR_FUSED_MIN) or \
        all(np.array_equal(a, b) for a, b in zip(got, ref)) and np.array_equal(out, ref_out)
    F = np.asfortranarray(X)                                   # not C order: the reference
    for a, b in zip(cpu.lr_forward_grad(np, F, y, w, out), ops.lr_forward_grad(np, F, y, w,
                                                                              ref_out)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(out, ref_out)
    y2 = y.astype(np.float32 if dtype == np.float64 else np.float64)  # mixed: the reference
    for a, b in zip(cpu.lr_forward_grad(np, X, y2, w, out),
                    ops.lr_forward_grad(np, X, y2, w, ref_out)):
        np.testing.assert_array_equal(a, b)


@needs_numba
def test_lr_forward_grad_twin_saturates_and_propagates_nan():
    """Logits far beyond ``exp``'s range give the limits (``p`` exactly 0 or 1, zero
    curvature, finite gradient), and a non-finite ``w`` (a diverged step) gives a
    non-finite gradient: the loop's fast-math flags assume neither away."""
    from hvpoison.kernels import cpu

    n, d = 256, 256
    X = np.ones((n, d))
    y = np.r_[np.zeros(n // 2), np.ones(n // 2)]
    for sign in (1.0, -1.0):
        w = np.full(d + 1, sign * 10.0)                        # z = +-2570
        out = np.empty(d + 1)
        z, r, c = cpu.lr_forward_grad(np, X, y, w, out)
        p = (sign > 0) * 1.0
        np.testing.assert_array_equal(r, (p - y) / n)
        np.testing.assert_array_equal(c, np.zeros(n))
        assert np.isfinite(out).all()
    w = np.zeros(d + 1)
    w[3] = np.nan
    out = np.empty(d + 1)
    cpu.lr_forward_grad(np, X, y, w, out)
    assert np.isnan(out).all()
    w[3], w[4] = np.inf, -np.inf                               # z = inf - inf = nan
    cpu.lr_forward_grad(np, X, y, w, out)
    assert np.isnan(out).all()


@needs_numba
def test_lr_gradient_through_the_fused_twin_matches_finite_differences():
    """The gradient a training step takes (``linearize(..., grad_out=g)``, LR's
    ``forward_grad`` twin) against central differences of the loss, on a problem large
    enough for the twin."""
    obj, X, y, w, _ = twin_sized_lr(6, 300)
    data = obj.prepare(X, y, -1.0)
    g = np.empty_like(w)
    with K.use_kernels(True):
        obj.linearize(w, data, grad_out=g)
    h = 1e-6
    fd = np.array([(obj.loss(w + h * e, X, y, -1.0) - obj.loss(w - h * e, X, y, -1.0))
                   / (2 * h) for e in np.eye(w.shape[0])[::16]])
    np.testing.assert_allclose(g[::16], fd, rtol=1e-6, atol=1e-9)


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (257, 255), (1001, 784), (4, 1 << 16)])
@pytest.mark.parametrize("with_grad", [False, True])
@pytest.mark.parametrize("k", [None, 1, 5, 8])
def test_lr_hvp_fresh_twin_matches_reference(shape, dtype, with_grad, k):
    """LR's ``H v`` or ``H V`` (``k`` directions) and gradient at a fresh point in one read
    of ``X``: ragged row counts, both sides of ``LR_FUSED_MIN``; a strided ``X`` or mixed
    dtypes run the reference."""
    from hvpoison.kernels import cpu

    rng = np.random.default_rng(shape[0] + 1)
    X = rng.normal(size=shape).astype(dtype)
    y = (rng.random(shape[0]) < 0.5).astype(dtype)
    w = (rng.normal(size=shape[1] + 1) / np.sqrt(shape[1])).astype(dtype)
    v = rng.normal(size=(shape[1] + 1,) + (() if k is None else (k,))).astype(dtype)

    def run(f, X_, y_):
        g = np.full(shape[1] + 1, np.nan, dtype) if with_grad else None
        hv_ = np.full(v.shape, np.nan, dtype)
        f(np, X_, y_, w, v, g, hv_)
        return [hv_] if g is None else [hv_, g]

    ref, got = run(ops.lr_hvp_fresh, X, y), run(cpu.lr_hvp_fresh, X, y)
    tol = dict(rtol=2e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    for a, b in zip(got, ref):
        assert a.dtype == dtype
        np.testing.assert_allclose(a / np.abs(b).max(), b / np.abs(b).max(), **tol)
    if X.size < cpu.LR_FUSED_MIN:                              # the reference, bit for bit
        for a, b in zip(got, ref):
            np.testing.assert_array_equal(a, b)
    F = np.asfortranarray(X)                                   # not C order: the reference
    for a, b in zip(run(cpu.lr_hvp_fresh, F, y), run(ops.lr_hvp_fresh, F, y)):
        np.testing.assert_array_equal(a, b)
    y2 = y.astype(np.float32 if dtype == np.float64 else np.float64)  # mixed: the reference
    for a, b in zip(run(cpu.lr_hvp_fresh, X, y2), run(ops.lr_hvp_fresh, X, y2)):
        np.testing.assert_array_equal(a, b)


@needs_numba
def test_lr_fresh_hvp_through_the_fused_twin_matches_finite_differences():
    """``obj.hvp`` of LR (a fresh point: ``ops.lr_hvp_fresh``'s twin) and ``hvp_fresh(...,
    with_grad=True)`` against central differences of the gradient, and a block of three
    directions against three single products, on a problem large enough for the twin."""
    obj, X, y, w, v = twin_sized_lr(7, 301)
    with K.use_kernels(True):
        Hv = obj.hvp(w, X, y, -1.0, v)
        data = obj.prepare(X, y, -1.0)
        g, Hv2 = obj.hvp_fresh(w, data, v, with_grad=True)
        V = np.stack([v, 2 * v, np.ones_like(v)], axis=1)               # a block
        g3, HV = obj.hvp_fresh(w, data, V, with_grad=True)
        singles = np.stack([obj.hvp_fresh(w, data, np.ascontiguousarray(V[:, j]))
                            for j in range(3)], 1)
    assert_hvp_matches_fd(obj, X, y, w, v, Hv)
    np.testing.assert_allclose(Hv2, Hv, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g, obj.grad(w, X, y, -1.0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(HV, singles, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(g3, g, rtol=1e-12, atol=1e-15)


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, k", [((1, 1), 1), ((7, 3), 2), ((257, 255), 8),
                                      ((1001, 784), 8), ((4, 1 << 16), 3), ((1002, 784), 1),
                                      ((301, 300), 6), ((1003, 70), 4)])
def test_lr_rop_block_twin_matches_reference(shape, k, dtype):
    """LR's blocked R pass (``k`` directions, one read of ``X``): ragged row counts, both
    sides of ``LR_FUSED_MIN``, groups of four directions with and without a remainder; a
    strided ``X``, strided ``V`` or mixed dtypes give the reference's numbers."""
    from hvpoison.kernels import cpu

    rng = np.random.default_rng(shape[0] + k)
    X = rng.normal(size=shape).astype(dtype)
    curv = rng.random(shape[0]).astype(dtype)
    V = rng.normal(size=(shape[1] + 1, k)).astype(dtype)

    def run(f, X_, c_, V_):
        return f(np, X_, c_, V_, np.full((shape[1] + 1, k), np.nan, dtype))

    ref, got = run(ops.lr_rop_block, X, curv, V), run(cpu.lr_rop_block, X, curv, V)
    assert got.dtype == dtype and got.shape == (shape[1] + 1, k)
    tol = dict(rtol=2e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    scale = np.abs(ref).max()
    np.testing.assert_allclose(got / scale, ref / scale, **tol)
    if X.size < cpu.LR_FUSED_MIN:                              # the reference, bit for bit
        np.testing.assert_array_equal(got, ref)
    else:                                                      # the loop ran, not BLAS
        assert not np.array_equal(got, ref) or k == 1
    F = np.asfortranarray(X)                                   # not C order: the reference
    np.testing.assert_array_equal(run(cpu.lr_rop_block, F, curv, V),
                                  run(ops.lr_rop_block, F, curv, V))
    VF = np.asfortranarray(V)                                  # any layout of V: copied
    np.testing.assert_allclose(run(cpu.lr_rop_block, X, curv, VF) / scale, ref / scale, **tol)
    c2 = curv.astype(np.float32 if dtype == np.float64 else np.float64)   # mixed dtypes
    np.testing.assert_array_equal(run(cpu.lr_rop_block, X, c2, V),
                                  run(ops.lr_rop_block, X, c2, V))


@needs_numba
def test_lr_blocked_hvp_through_the_fused_twin_matches_single_products():
    """``Point.hvp_block`` of LR (``rop_block``: the blocked twin) against ``k`` single
    ``hvp`` products and against central differences, on a problem large enough for the
    twin."""
    obj, X, y, w, _ = twin_sized_lr(8, 301)
    k = 5
    V = np.random.default_rng(9).normal(size=(w.shape[0], k))
    with K.use_kernels(True):
        pt = obj.at(w, X, y, -1.0)
        HV = pt.hvp_block(V)
        singles = np.stack([pt.hvp(np.ascontiguousarray(V[:, j])) for j in range(k)], 1)
    np.testing.assert_allclose(HV, singles, rtol=1e-10, atol=1e-13)
    assert_hvp_matches_fd(obj, X, y, w, V[:, 2], HV[:, 2])


@needs_numba
def test_lr_block_twins_leave_many_directions_to_blas():
    """With more than ``LR_BLOCK_MAX_K`` directions (the dense Hessian's blocks of 256) the
    blocked twins run the reference, whose GEMMs are then faster: its numbers bit for
    bit."""
    from hvpoison.kernels import cpu

    rng = np.random.default_rng(9)
    n, d, k = 1001, 784, cpu.LR_BLOCK_MAX_K + 1
    X = rng.normal(size=(n, d))
    assert X.size >= cpu.LR_FUSED_MIN
    curv, V = rng.random(n), rng.normal(size=(d + 1, k))
    np.testing.assert_array_equal(cpu.lr_rop_block(np, X, curv, V, np.empty((d + 1, k))),
                                  ops.lr_rop_block(np, X, curv, V, np.empty((d + 1, k))))
    y, w = (rng.random(n) < 0.5).astype(float), rng.normal(size=d + 1) / np.sqrt(d)
    got, ref = (np.empty((d + 1, k)), np.empty(d + 1)), (np.empty((d + 1, k)), np.empty(d + 1))
    cpu.lr_hvp_fresh(np, X, y, w, V, got[1], got[0])
    ops.lr_hvp_fresh(np, X, y, w, V, ref[1], ref[0])
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)
