"""numba CPU twins of the element-wise steps in :mod:`hvpoison.ops` (optional: ``pip install
hvpoison[numba]``).

Each twin has its reference's signature and computes the same math in one compiled loop
instead of numpy's chain of temporaries; :func:`hvpoison.ops.impl` runs a twin for numpy
arrays when numba imports and kernels are enabled (``HVPOISON_KERNELS=0`` or
``use_kernels(False)`` switches twins and CUDA kernels off together). Only steps the
benchmark shows faster than numpy have a twin (``bench/RESULTS.md``, "numba twins"): the
penalty products touch ``P`` numbers a few times per step and stay numpy.
``tests/test_kernels.py`` holds every twin to its reference (float32 and float64, sizes
1, odd, strided).

Twins agree with the references to rounding, not bit for bit (``sigmoid_ce`` forms
``1 / (1 + exp(-z))`` where SciPy's ``expit`` uses ``exp(z) / (1 + exp(z))`` for
``z < 0``), so a run is repeatable for a given install, and runs with and without numba
agree to rounding.
"""
from __future__ import annotations

import math

import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True)


@_jit
def _sigmoid_ce(z, y, inv_n, residual, curv, with_loss):
    # p = 1 / (1 + exp(-z)): exp overflows to inf for z < -709 and gives p = 0 exactly,
    # which is the limit; branch-free, so the loop vectorises like numpy's expit
    loss = 0.0
    for i in range(z.shape[0]):
        p = 1.0 / (1.0 + math.exp(-z[i]))
        residual[i] = (p - y[i]) * inv_n
        curv[i] = p * (1.0 - p) * inv_n
    if with_loss:                       # softplus(z) - y z = max(z, 0) + log1p(e^-|z|) - y z
        for i in range(z.shape[0]):
            zi = z[i]
            loss += max(zi, 0.0) + math.log1p(math.exp(-abs(zi))) - y[i] * zi
    return loss * inv_n


@_jit
def _bias_leaky_relu(Z, b, slope, D, A):
    n, m = Z.shape
    for i in range(n):
        for j in range(m):
            v = Z[i, j] + b[j]
            d = 1.0 if v > 0 else slope
            Z[i, j] = v
            D[i, j] = d
            A[i, j] = v * d


@_jit
def _ascent_project(Xp, g, scale, lo, hi):
    n, d = Xp.shape
    for i in range(n):
        for j in range(d):
            Xp[i, j] = min(max(Xp[i, j] + scale * g[i, j], lo), hi)


def sigmoid_ce(xp, z, y, with_loss=True):
    """Twin of :func:`hvpoison.ops.sigmoid_ce` (``z``, ``y`` ``(n,)``)."""
    residual, curv = np.empty_like(z), np.empty_like(z)
    loss = _sigmoid_ce(z, y, 1.0 / z.shape[0], residual, curv, bool(with_loss))
    return (z.dtype.type(loss) if with_loss else None), residual, curv


def bias_leaky_relu(xp, Z, b, slope):
    """Twin of :func:`hvpoison.ops.bias_leaky_relu` (``Z`` ``(n, m)`` updated in place)."""
    D, A = np.empty_like(Z), np.empty_like(Z)
    _bias_leaky_relu(Z, b, Z.dtype.type(slope), D, A)
    return D, A


def ascent_project(xp, Xp, g, scale, lo, hi):
    """Twin of :func:`hvpoison.ops.ascent_project` (``Xp``, ``g`` ``(n_p, d)``, ``Xp`` in
    place)."""
    t = Xp.dtype.type
    _ascent_project(Xp, g, t(scale), t(lo), t(hi))
    return Xp


TWINS = {"sigmoid_ce": sigmoid_ce, "bias_leaky_relu": bias_leaky_relu,
         "ascent_project": ascent_project}
