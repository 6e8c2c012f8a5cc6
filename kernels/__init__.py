"""CUDA kernels for the hot element-wise and reduction steps, and their numba CPU twins
(:mod:`hvpoison.kernels.cpu`, used when numba is installed).

This folder is the package ``hvpoison.kernels``: an install maps it to that name
(``setup.cfg``; the ``.cu`` sources ship beside this file), and in a plain checkout (the
repository on ``sys.path``, nothing installed) :func:`hvpoison.ops._kernels` loads it
under that name from ``kernels/`` itself.

Each kernel is one C++ template for ``float`` and ``double``, compiled with NVRTC through
``cupy.RawModule`` the first time it is used on a device and cached per device. Each
wrapper below (the keys of :data:`OPS`) has the signature of its reference in
:mod:`hvpoison.ops` and is chosen by :func:`hvpoison.ops.impl` only for cupy arrays while
:func:`enabled`; ``tests/test_kernels.py`` checks every kernel against its reference
(float32 and float64, sizes 1, odd, and not multiples of the block) before ``bench/``
times it.
"""
from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = {   # kernel -> .cu file
    "sigmoid_ce": "sigmoid_ce.cu", "bias_leaky_relu": "leaky_relu.cu",
    "penalty_add": "penalty.cu",
    "penalty_mixed_lam": "penalty.cu", "ascent_project": "attack_step.cu"}
OPS = {       # wrapper (an op of hvpoison.ops.REFERENCE) -> the kernel it launches
    "sigmoid_ce": "sigmoid_ce", "bias_leaky_relu": "bias_leaky_relu",
    "ascent_project": "ascent_project", "penalty_grad_add": "penalty_add",
    "penalty_hvp_add": "penalty_add", "penalty_mixed_lam": "penalty_mixed_lam"}
#: ops with a numba twin but no CUDA kernel: on the GPU their reference runs (LR's fused
#: products: cuBLAS matrix-vector products already stream ``X`` at the device's bandwidth;
#: their sigmoid step still runs as its CUDA kernel)
CPU_ONLY = frozenset({"lr_rop", "lr_rop_block", "lr_forward_grad", "lr_hvp_fresh"})
MAX_GROUPS = 32   # penalty_mixed_lam's shared-memory accumulator; more groups: the reference
BLOCK = 256
_override = None


def enabled() -> bool:
    """Kernels on unless ``HVPOISON_KERNELS`` is 0/false/off or :func:`use_kernels` says so."""
    if _override is not None:
        return _override
    return os.environ.get("HVPOISON_KERNELS", "1").lower() not in ("0", "false", "off", "no")


@contextlib.contextmanager
def use_kernels(flag: bool):
    """``with use_kernels(False):`` runs the reference code on the GPU too."""
    global _override
    old, _override = _override, bool(flag)
    try:
        yield
    finally:
        _override = old


@functools.lru_cache(maxsize=None)
def cpu_twins() -> dict:
    """``{name: numba twin}`` for the CPU (:mod:`hvpoison.kernels.cpu`); empty without numba
    (or with a numba that cannot compile or cache here: then with a warning)."""
    try:
        from . import cpu
    except ImportError:          # numba is optional: the references run instead
        return {}
    except Exception as exc:     # noqa: BLE001 - numba present but unusable (e.g. no
        import warnings          # writable cache directory): warn, run the references

        warnings.warn(f"hvpoison: numba twins disabled, the numpy references run instead "
                      f"({type(exc).__name__}: {exc})", RuntimeWarning, stacklevel=2)
        return {}
    return cpu.TWINS


def source(cu: str) -> str:
    return (HERE / cu).read_text()


@functools.lru_cache(maxsize=None)
def _module(cu: str, device: int):  # pragma: no cover - GPU only
    import cupy

    names = [k for k, f in SOURCES.items() if f == cu]
    exprs = [f"{k}<{t}>" for k in names for t in ("float", "double")]
    with cupy.cuda.Device(device):
        return cupy.RawModule(code=source(cu), options=("-std=c++14",), name_expressions=exprs)


def function(name: str, dtype):  # pragma: no cover - GPU only
    """The compiled kernel ``name<float|double>`` for ``dtype`` on the current device."""
    import cupy
    import numpy as np

    ctype = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}[np.dtype(dtype)]
    return _module(SOURCES[name], cupy.cuda.runtime.getDevice()).get_function(
        f"{name}<{ctype}>")


def _grid(size):
    return (max(1, min(1024, -(-int(size) // BLOCK))),)


def _i64(x):     # a ``long long`` argument (CuPy passes scalars by their numpy dtype)
    import numpy as np

    return np.int64(x)


def _i32(x):     # an ``int`` argument
    import numpy as np

    return np.int32(x)


# -- wrappers with the references' signatures (GPU only) ----------------------------------
def sigmoid_ce(xp, z, y, with_loss=True):  # pragma: no cover - GPU only
    n = z.shape[0]
    z, y = xp.ascontiguousarray(z), xp.ascontiguousarray(y, dtype=z.dtype)
    residual, curv = xp.empty_like(z), xp.empty_like(z)
    loss = xp.zeros((), dtype=z.dtype)
    function("sigmoid_ce", z.dtype)(_grid(n), (BLOCK,), (z, y, z.dtype.type(1.0 / n),
                                                           residual, curv, loss, _i64(n)),
                                    shared_mem=BLOCK * z.dtype.itemsize)
    return loss, residual, curv


def bias_leaky_relu(xp, Z, b, slope):  # pragma: no cover - GPU only
    assert Z.flags.c_contiguous
    D, A = xp.empty_like(Z), xp.empty_like(Z)
    function("bias_leaky_relu", Z.dtype)(_grid(Z.size), (BLOCK,),
                                         (Z, xp.ascontiguousarray(b), D, A,
                                          Z.dtype.type(slope), _i64(Z.size), _i64(Z.shape[1])))
    return D, A


def ascent_project(xp, Xp, g, scale, lo, hi):  # pragma: no cover - GPU only
    assert Xp.flags.c_contiguous
    t = Xp.dtype.type
    scale = xp.asarray(scale, dtype=Xp.dtype).reshape(1)   # a float or a 0-d device array
    function("ascent_project", Xp.dtype)(_grid(Xp.size), (BLOCK,),
                                         (Xp, xp.ascontiguousarray(g), scale, t(lo), t(hi),
                                          _i64(Xp.size)))
    return Xp


def _reference(name):  # pragma: no cover - GPU only
    from .. import ops

    return ops.REFERENCE[name]


def _fits(groups, *arrays):  # pragma: no cover - GPU only
    """The penalty kernels apply: at most :data:`MAX_GROUPS` groups, and every array ``(P,)``
    (``groups.index``'s shape), contiguous, in the first one's dtype (a block ``V``
    ``(P, k)`` takes the reference)."""
    return len(groups) <= MAX_GROUPS and all(
        a.shape == groups.index.shape and a.dtype == arrays[0].dtype and a.flags.c_contiguous
        for a in arrays)


def _penalty_add(xp, x, e, groups, out, mode):  # pragma: no cover - GPU only
    """``out_i += e_g x_i`` on the weights, ``x`` = ``w`` / ``sign(w)`` / ``v`` (``mode``
    0 / 1 / 2 of penalty.cu; the kernel reads ``x`` as ``w`` for 0, 1 and as ``v`` for 2)."""
    function("penalty_add", x.dtype)(_grid(x.size), (BLOCK,),
                                     (x, x, xp.ascontiguousarray(e, dtype=x.dtype),
                                      groups.index_on(xp), out, _i64(x.size), _i32(mode)))
    return out


def penalty_grad_add(xp, w, e, groups, out, l1):  # pragma: no cover - GPU only
    """``out += e_g Omega'(w)`` on the weights (:func:`hvpoison.ops.penalty_grad_add`)."""
    if not _fits(groups, w, out):
        return _reference("penalty_grad_add")(xp, w, e, groups, out, l1)
    return _penalty_add(xp, w, e, groups, out, 1 if l1 else 0)


def penalty_hvp_add(xp, v, e, groups, out):  # pragma: no cover - GPU only
    """``out += e_g v`` on the weights (:func:`hvpoison.ops.penalty_hvp_add`)."""
    if not _fits(groups, v, out):
        return _reference("penalty_hvp_add")(xp, v, e, groups, out)
    return _penalty_add(xp, v, e, groups, out, 2)


def penalty_mixed_lam(xp, w, v, e, groups, l1):  # pragma: no cover - GPU only
    """``(e_g Omega'(w_g)^T v_g)_g``, shape ``(G,)`` (:func:`hvpoison.ops.penalty_mixed_lam`)."""
    if not _fits(groups, w, v):
        return _reference("penalty_mixed_lam")(xp, w, v, e, groups, l1)
    out = xp.zeros(len(groups), dtype=w.dtype)
    function("penalty_mixed_lam", w.dtype)(_grid(w.size), (BLOCK,),
                                           (w, v, xp.ascontiguousarray(e, dtype=w.dtype),
                                            groups.index_on(xp), out, _i64(w.size),
                                            _i32(len(groups)), _i32(l1)))
    return out
