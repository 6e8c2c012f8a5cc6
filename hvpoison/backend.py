"""Array-module selection: the math is written once against ``xp``.

``xp`` is :mod:`numpy` on the CPU and :mod:`cupy` on an NVIDIA GPU.  Every engine
function asks :func:`get_array_module` for the module of its inputs (or of an explicit
``device=``), so importing :mod:`hvpoison` never needs cupy; cupy is imported only when
a cupy array or ``device="gpu"`` shows up.
"""
from __future__ import annotations

import importlib

import numpy as np

DEVICES = ("cpu", "gpu")


def _cupy():
    """Return the cupy module, or raise ImportError naming the missing extra."""
    try:
        return importlib.import_module("cupy")
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise ImportError(
            "device: 'gpu' needs cupy; install it with `pip install hvpoison[gpu]` "
            f"(import failed: {exc})"
        ) from exc


def is_cupy_array(a) -> bool:
    return type(a).__module__.split(".")[0] == "cupy"


def get_array_module(*arrays, device: str | None = None):
    """Return ``numpy`` or ``cupy``: the array module every equation (Eq. 1-9, Alg. 1-2) is
    written against; ``arrays`` of any shape.

    ``device`` ('cpu' | 'gpu') wins when given; otherwise cupy is chosen if any of
    ``arrays`` is a cupy array, numpy otherwise.
    """
    if device is not None:
        if device == "cpu":
            return np
        if device == "gpu":
            return _cupy()
        raise ValueError(f"device: expected one of {DEVICES} or None, got {device!r}")
    for a in arrays:
        if is_cupy_array(a):
            return _cupy()
    return np


def sparse_linalg(xp):
    """The sparse linear-algebra namespace matching ``xp`` (for ``cg`` and ``LinearOperator``)."""
    if xp is np:
        import scipy.sparse.linalg as spla

        return spla
    return importlib.import_module("cupyx.scipy.sparse.linalg")  # pragma: no cover


def to_numpy(a):
    """Host copy of ``a`` (no copy for numpy arrays)."""
    if is_cupy_array(a):  # pragma: no cover - GPU only
        return a.get()
    return np.asarray(a)


def cho_factor(H):
    """Lower Cholesky factor of a symmetric positive definite ``H`` ``(P, P)`` (on ``H``'s
    device); a ridge of ``1e-12 * max|diag H|`` is added if round-off makes it fail (numpy
    raises; cupy returns NaNs instead, so its factor is checked)."""
    xp = get_array_module(H)
    try:
        L = xp.linalg.cholesky(H)
        if xp is np or bool(xp.isfinite(L).all()):
            return L
    except np.linalg.LinAlgError:
        pass
    ridge = 1e-12 * float(xp.abs(xp.diag(H)).max())
    return xp.linalg.cholesky(H + ridge * xp.eye(H.shape[0], dtype=H.dtype))


def cho_solve(L, r):
    """``(L L^T)^{-1} r`` for the factor ``L`` of :func:`cho_factor` and ``r`` ``(P,)`` or
    ``(P, k)``."""
    xp = get_array_module(L)
    if xp is np:
        import scipy.linalg

        return scipy.linalg.cho_solve((L, True), r, check_finite=False)
    from cupyx.scipy.linalg import solve_triangular  # pragma: no cover - GPU only

    z = solve_triangular(L, r, lower=True)  # pragma: no cover
    return solve_triangular(L, z, lower=True, trans="T")  # pragma: no cover
