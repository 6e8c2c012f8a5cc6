"""numba CPU twins of the element-wise steps and of LR's fused products in :mod:`hvpoison.ops`
hvpoison[numba]``).

Each twin has its reference's signature and computes the same math in one compiled loop
instead of numpy's chain of temporaries; :func:`hvpoison.ops.impl` runs a twin for numpy
arrays when numba imports and kernels are enabled (``HVPOISON_KERNELS=0`` or
``use_kernels(False)`` switches twins and CUDA kernels off together). Only steps the
benchmark shows faster than numpy have a twin (``bench/RESULTS.md``, "numba twins"): the
penalty products touch ``P`` numbers a few times per step and stay numpy. The ``lr_*``
twins are not element-wise: each fuses LR's products with ``X`` of one pass into one read
of ``X``, four rows at a time: the R pass (``lr_rop``: 1.15-1.34x at 1000 x 784,
1.34-1.56x from 10^4 rows on), its block of ``k`` directions (``lr_rop_block``), the
forward pass, loss and gradient of a training step (``lr_forward_grad``) and ``H v`` at a
fresh point (``lr_hvp_fresh``); ``bench/RESULTS.md``, 2026-12-01 and 2026-12-02.
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


@numba.njit(nogil=True, inline="always")
def _leaky_step(Z, b, slope, one, D, A, i, j):
    v = Z[i, j] + b[j]
    d = one if v > 0 else slope
    Z[i, j] = v
    D[i, j] = d
    A[i, j] = v * d


@_jit
def _bias_leaky_relu(Z, b, slope, D, A):
    # in Z's memory order (D and A share its layout): the MLP's transposed first-layer GEMM
    # (mlp._xw) hands in a column-major Z, where a row-major loop was 6x slower
    n, m = Z.shape
    one = Z.dtype.type(1)               # a float64 1.0 would make the float32 loop scalar
    if Z.strides[0] < Z.strides[1]:
        for j in range(m):
            for i in range(n):
                _leaky_step(Z, b, slope, one, D, A, i, j)
    else:
        for i in range(n):
            for j in range(m):
                _leaky_step(Z, b, slope, one, D, A, i, j)


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


#: fewer elements of ``X`` than this: :func:`lr_rop` and :func:`lr_forward_grad` run the
#: reference (numba's call overhead is then larger than the saved read; small problems keep
#: the reference's bits)
LR_FUSED_MIN = 1 << 16

#: the fast-math flags of the row-fused loops: reassociation lets their reductions
#: vectorise (agreement with the reference is to rounding); no ``nnan``/``ninf``, so a
#: diverged ``w`` (inf, nan) still comes out non-finite and ``exp`` may overflow to inf
_FAST = {"nsz", "arcp", "contract", "reassoc"}


def _fits(X, *arrays):
    """A C-order float ``X`` of at least :data:`LR_FUSED_MIN` elements with every array of
    its dtype: the row-fused loops run (else the reference)."""
    return X.size >= LR_FUSED_MIN and X.flags.c_contiguous and X.dtype.kind == "f" and \
        all(a.dtype == X.dtype for a in arrays)


# The row-fused loops below read a block of four rows of X once, while they are in L1, for
# every product of their pass (_FAST lets the reductions vectorise); these two steps are
# inlined into them (and compiled with their flags). Measured: staging the four values in
# a small array, or one code path for ragged and full blocks, costs 10-37 %.
_inline = numba.njit(nogil=True, fastmath=_FAST, inline="always")


@_inline
def _dots4(X, i, v):
    # (x_i . v, ..., x_{i+3} . v): four rows share each load of v (and hide the FMA latency)
    a0 = a1 = a2 = a3 = X.dtype.type(0)
    for j in range(X.shape[1]):
        vj = v[j]
        a0 += X[i, j] * vj
        a1 += X[i + 1, j] * vj
        a2 += X[i + 2, j] * vj
        a3 += X[i + 3, j] * vj
    return a0, a1, a2, a3


@_inline
def _axpy4(g, X, i, c0, c1, c2, c3):
    # g += c0 x_i + ... + c3 x_{i+3}: g is loaded and stored once per four rows
    for j in range(X.shape[1]):
        g[j] += c0 * X[i, j] + c1 * X[i + 1, j] + c2 * X[i + 2, j] + c3 * X[i + 3, j]


@_inline
def _dots4x4(X, i, v0, v1, v2, v3):
    # the 16 products x_{i+r} . v_t (index 4 t + r): each load of X serves four directions and
    # each load of a v four rows (a 4 x 4 register block: the blocked loops ran 1.2-1.36x
    # faster than with four _dots4, bench/RESULTS.md, 2026-12-02, 503f605)
    z = X.dtype.type(0)
    a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = c0 = c1 = c2 = c3 = d0 = d1 = d2 = d3 = z
    for j in range(X.shape[1]):
        x0, x1, x2, x3 = X[i, j], X[i + 1, j], X[i + 2, j], X[i + 3, j]
        v, u, p, q = v0[j], v1[j], v2[j], v3[j]
        a0 += x0 * v
        a1 += x1 * v
        a2 += x2 * v
        a3 += x3 * v
        b0 += x0 * u
        b1 += x1 * u
        b2 += x2 * u
        b3 += x3 * u
        c0 += x0 * p
        c1 += x1 * p
        c2 += x2 * p
        c3 += x3 * p
        d0 += x0 * q
        d1 += x1 * q
        d2 += x2 * q
        d3 += x3 * q
    return a0, a1, a2, a3, b0, b1, b2, b3, c0, c1, c2, c3, d0, d1, d2, d3


@_inline
def _rop4(out_j, sums, j, X, i, c0, c1, c2, c3, e0, e1, e2, e3, b):
    # direction j of the R pass over rows i..i+3 given x_{i+r} . v_j = e_r: R s_r = c_r (e_r
    # + b), sums[j] += sum_r R s_r, out_j += sum_r R s_r x_{i+r} (one axpy per direction: two
    # outputs in one loop do not vectorise)
    r0, r1, r2, r3 = c0 * (e0 + b), c1 * (e1 + b), c2 * (e2 + b), c3 * (e3 + b)
    sums[j] += r0 + r1 + r2 + r3
    _axpy4(out_j, X, i, r0, r1, r2, r3)


@_inline
def _rop1_block(X, r, c, Vt, vb, out, sums):
    # the R pass of the single row r (curvature c) for every direction (row j of Vt, out):
    # the ragged last rows of the blocked loops
    for j in range(Vt.shape[0]):
        e = X.dtype.type(0)
        for l in range(X.shape[1]):
            e += X[r, l] * Vt[j, l]
        Rs = c * (e + vb[j])
        sums[j] += Rs
        for l in range(X.shape[1]):
            out[j, l] += Rs * X[r, l]


@_inline
def _rop4_block(X, i, c0, c1, c2, c3, Vt, vb, out, sums):
    # the R pass of rows i..i+3 (curvatures c_r) for every direction (row j of Vt, out):
    # four directions at a time through _dots4x4, the rest one at a time
    k = Vt.shape[0]
    k4 = k - k % 4
    for j in range(0, k4, 4):
        e = _dots4x4(X, i, Vt[j], Vt[j + 1], Vt[j + 2], Vt[j + 3])
        for t in range(4):
            _rop4(out[j + t], sums, j + t, X, i, c0, c1, c2, c3,
                  e[4 * t], e[4 * t + 1], e[4 * t + 2], e[4 * t + 3], vb[j + t])
    for j in range(k4, k):
        e0, e1, e2, e3 = _dots4(X, i, Vt[j])
        _rop4(out[j], sums, j, X, i, c0, c1, c2, c3, e0, e1, e2, e3, vb[j])


@_inline
def _unit(z, y, inv_n):
    # the sigmoid unit at logit z, label y: (residual, curvature) / n, p = 1 / (1 + e^-z)
    # as _sigmoid_ce (e^-z overflows to inf for z < -709 and gives p = 0, the limit)
    p = 1.0 / (1.0 + math.exp(-z))
    return (p - y) * inv_n, p * (1.0 - p) * inv_n


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _lr_rop(X, curv, v, vb, g):
    # four rows at a time: four dot products share each load of v (and hide the FMA
    # latency), then g += sum_r Rs_r x_r loads and stores g once per four rows; every row
    # is read twice while it is in L1, so X is read from memory once (_FAST lets the
    # reductions vectorise).
    n, d = X.shape
    Rs = np.empty(n, X.dtype)
    zero = X.dtype.type(0)
    g[:] = zero
    n4 = n - n % 4
    for i in range(0, n4, 4):
        a0, a1, a2, a3 = _dots4(X, i, v)
        r0 = curv[i] * (a0 + vb)
        r1 = curv[i + 1] * (a1 + vb)
        r2 = curv[i + 2] * (a2 + vb)
        r3 = curv[i + 3] * (a3 + vb)
        Rs[i], Rs[i + 1], Rs[i + 2], Rs[i + 3] = r0, r1, r2, r3
        _axpy4(g, X, i, r0, r1, r2, r3)
    for i in range(n4, n):
        a = zero
        for j in range(d):
            a += X[i, j] * v[j]
        r = curv[i] * (a + vb)
        Rs[i] = r
        for j in range(d):
            g[j] += r * X[i, j]
    return Rs


def lr_rop(xp, X, curv, v, out):
    """Twin of :func:`hvpoison.ops.lr_rop` (``X`` ``(n, d)``, ``curv`` ``(n,)``, ``v``,
    ``out`` ``(d + 1,)``): one read of ``X`` instead of two, for a C-order ``X`` of at least
    :data:`LR_FUSED_MIN` elements with ``curv``, ``v`` and ``out`` of its dtype (else the
    reference)."""
    from .. import ops

    if not _fits(X, curv, v, out):
        return ops.lr_rop(xp, X, curv, v, out)
    Rs = _lr_rop(X, curv, v, v[-1], out[:-1])
    out[-1] = Rs.sum()
    return Rs


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _lr_rop_block(X, curv, Vt, vb, out, sums):
    # _lr_rop's two loops for the k directions (rows of Vt, out; four at a time: _rop4_block)
    # over the same four rows while they are in L1: X is read from memory once for all k (a
    # GEMM of width k reads it twice and packs it); sums[j] = 1^T R s of direction j
    n = X.shape[0]
    zero = X.dtype.type(0)
    out[:, :] = zero
    sums[:] = zero
    for i in range(0, n, 4):
        m = min(4, n - i)                       # the last block may be ragged
        if m < 4:
            for r in range(i, n):
                _rop1_block(X, r, curv[r], Vt, vb, out, sums)
            continue
        _rop4_block(X, i, curv[i], curv[i + 1], curv[i + 2], curv[i + 3], Vt, vb, out, sums)


#: more directions than this: the blocked loops (:func:`lr_rop_block`, and
#: :func:`lr_hvp_fresh` for a block) run the reference, whose two GEMMs of width ``k`` then
#: use the FMA units better (with the 4 x 4 register block the loop is 1.03-2.8x faster
#: than BLAS for ``k <= 8`` from 500 x 784 to 10^4 x 784, bar one 0.83x; 0.86-1.03x at
#: ``k = 16`` on a cache-sized ``X``, 0.64-0.68x at ``k = 256``, the dense Hessian's
#: blocks: ``bench/RESULTS.md``, 2026-12-02)
LR_BLOCK_MAX_K = 8


def lr_rop_block(xp, X, curv, V, out):
    """Twin of :func:`hvpoison.ops.lr_rop_block` (``X`` ``(n, d)``, ``curv`` ``(n,)``,
    ``V``, ``out`` ``(d + 1, k)``): one read of ``X`` for all ``k`` directions instead of
    two GEMMs, for a C-order ``X`` of at least :data:`LR_FUSED_MIN` elements, at most
    :data:`LR_BLOCK_MAX_K` directions and the others of ``X``'s dtype (else the
    reference)."""
    from .. import ops

    if V.shape[1] > LR_BLOCK_MAX_K or not _fits(X, curv, V, out):
        return ops.lr_rop_block(xp, X, curv, V, out)
    k = V.shape[1]
    Vt = np.ascontiguousarray(V[:-1].T)                     # (k, d): one copy of k d numbers
    vb = np.ascontiguousarray(V[-1])
    out_t, sums = np.empty((k, X.shape[1]), X.dtype), np.empty(k, X.dtype)
    _lr_rop_block(X, curv, Vt, vb, out_t, sums)
    out[:-1] = out_t.T
    out[-1] = sums
    return out


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _lr_forward_grad(X, y, W, b, inv_n, z, residual, curv, g):
    # as _lr_rop, four rows at a time: z = x W + b, then the sigmoid unit's residual and
    # curvature (p = 1 / (1 + exp(-z)), as _sigmoid_ce), then g += sum_r residual_r x_r
    # while the four rows are in L1
    n, d = X.shape
    zero = X.dtype.type(0)
    g[:] = zero
    n4 = n - n % 4
    for i in range(0, n4, 4):
        a0, a1, a2, a3 = _dots4(X, i, W)
        z[i], z[i + 1], z[i + 2], z[i + 3] = a0 + b, a1 + b, a2 + b, a3 + b
        for r in range(i, i + 4):
            residual[r], curv[r] = _unit(z[r], y[r], inv_n)
        _axpy4(g, X, i, residual[i], residual[i + 1], residual[i + 2], residual[i + 3])
    for i in range(n4, n):
        a = zero
        for j in range(d):
            a += X[i, j] * W[j]
        z[i] = a + b
        residual[i], curv[i] = _unit(z[i], y[i], inv_n)
        r = residual[i]
        for j in range(d):
            g[j] += r * X[i, j]


def lr_forward_grad(xp, X, y, w, out):
    """Twin of :func:`hvpoison.ops.lr_forward_grad` (``X`` ``(n, d)``, ``y`` ``(n,)``,
    ``w``, ``out`` ``(d + 1,)``): one read of ``X`` instead of two, for a C-order ``X`` of
    at least :data:`LR_FUSED_MIN` elements with ``y``, ``w`` and ``out`` of its dtype (else
    the reference, with this module's :func:`sigmoid_ce`)."""
    from .. import ops

    if not _fits(X, y, w, out):
        return ops.lr_forward_grad(xp, X, y, w, out)
    n = X.shape[0]
    z, residual, curv = (np.empty(n, X.dtype) for _ in range(3))
    _lr_forward_grad(X, y, w[:-1], w[-1], X.dtype.type(1.0 / n), z, residual, curv, out[:-1])
    out[-1] = residual.sum()
    return z, residual, curv


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _lr_hvp_fresh(X, y, W, b, V, vb, inv_n, g, hv, with_grad):
    # four rows at a time: z = x W + b and R z = x V + v_b share each load of the rows, then
    # the sigmoid unit, R s = curv * R z, and hv += sum_r R s_r x_r (g += sum_r s_r x_r
    # with_grad) while the rows are in L1; returns (1^T residual, 1^T R s)
    n, d = X.shape
    zero = X.dtype.type(0)
    g[:] = zero
    hv[:] = zero
    a, c = np.empty(4, X.dtype), np.empty(4, X.dtype)      # x W and x V of four rows
    s, Rs = np.empty(4, X.dtype), np.empty(4, X.dtype)
    sum_s, sum_Rs = zero, zero
    for i in range(0, n, 4):
        m = min(4, n - i)                       # the last block may be ragged
        if m == 4:
            a0, a1, a2, a3, c0, c1, c2, c3 = zero, zero, zero, zero, zero, zero, zero, zero
            for j in range(d):
                wj, vj = W[j], V[j]
                x0, x1, x2, x3 = X[i, j], X[i + 1, j], X[i + 2, j], X[i + 3, j]
                a0 += x0 * wj
                a1 += x1 * wj
                a2 += x2 * wj
                a3 += x3 * wj
                c0 += x0 * vj
                c1 += x1 * vj
                c2 += x2 * vj
                c3 += x3 * vj
            a[0], a[1], a[2], a[3], c[0], c[1], c[2], c[3] = a0, a1, a2, a3, c0, c1, c2, c3
        else:
            a[:] = zero
            c[:] = zero
            for r in range(m):
                for j in range(d):
                    a[r] += X[i + r, j] * W[j]
                    c[r] += X[i + r, j] * V[j]
        for r in range(4):
            s[r] = zero
            Rs[r] = zero
        for r in range(m):
            s[r], cr = _unit(a[r] + b, y[i + r], inv_n)
            Rs[r] = cr * (c[r] + vb)
            sum_s += s[r]
            sum_Rs += Rs[r]
        if m == 4:
            _axpy4(hv, X, i, Rs[0], Rs[1], Rs[2], Rs[3])
            if with_grad:
                _axpy4(g, X, i, s[0], s[1], s[2], s[3])
        else:
            for r in range(m):
                for j in range(d):
                    hv[j] += Rs[r] * X[i + r, j]
                    if with_grad:
                        g[j] += s[r] * X[i + r, j]
    return sum_s, sum_Rs


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _lr_hvp_fresh_block(X, y, W, b, Vt, vb, inv_n, g, out, sums, with_grad):
    # per four rows: z = x W + b and the sigmoid unit (as _lr_forward_grad), then for each
    # of the k directions (row j of Vt, out) _lr_rop_block's loops (_rop4_block) while the
    # rows are in L1 (and g += sum_r s_r x_r with_grad); returns 1^T residual
    n, d = X.shape
    zero = X.dtype.type(0)
    g[:] = zero
    out[:, :] = zero
    sums[:] = zero
    s, c = np.empty(4, X.dtype), np.empty(4, X.dtype)
    sum_s = zero
    for i in range(0, n, 4):
        m = min(4, n - i)                       # the last block may be ragged
        for r in range(m):
            a = zero
            for l in range(d):
                a += X[i + r, l] * W[l]
            s[r], c[r] = _unit(a + b, y[i + r], inv_n)
            sum_s += s[r]
        if m < 4:
            for r in range(m):
                _rop1_block(X, i + r, c[r], Vt, vb, out, sums)
                if with_grad:
                    for l in range(d):
                        g[l] += s[r] * X[i + r, l]
            continue
        _rop4_block(X, i, c[0], c[1], c[2], c[3], Vt, vb, out, sums)
        if with_grad:
            _axpy4(g, X, i, s[0], s[1], s[2], s[3])
    return sum_s


def lr_hvp_fresh(xp, X, y, w, V, out_g, out_hv):
    """Twin of :func:`hvpoison.ops.lr_hvp_fresh` (``X`` ``(n, d)``, ``y`` ``(n,)``, ``w``
    and ``out_g`` (or None) ``(d + 1,)``, ``V`` and ``out_hv`` ``(d + 1,)`` or ``(d + 1,
    k)``): one read of ``X`` instead of two, for a C-order ``X`` of at least
    :data:`LR_FUSED_MIN` elements, at most :data:`LR_BLOCK_MAX_K` directions and the others
    of ``X``'s dtype (else the reference, with this module's :func:`sigmoid_ce`)."""
    from .. import ops

    arrays = (y, w, V, out_hv) if out_g is None else (y, w, V, out_hv, out_g)
    if (V.ndim == 2 and V.shape[1] > LR_BLOCK_MAX_K) or not _fits(X, *arrays):
        return ops.lr_hvp_fresh(xp, X, y, w, V, out_g, out_hv)
    if V.ndim == 2:
        k = V.shape[1]
        g = np.empty(0 if out_g is None else X.shape[1], X.dtype)
        out_t, sums = np.empty((k, X.shape[1]), X.dtype), np.empty(k, X.dtype)
        sum_s = _lr_hvp_fresh_block(X, y, w[:-1], w[-1], np.ascontiguousarray(V[:-1].T),
                                    np.ascontiguousarray(V[-1]),
                                    X.dtype.type(1.0 / X.shape[0]), g, out_t, sums,
                                    out_g is not None)
        out_hv[:-1] = out_t.T
        out_hv[-1] = sums
        if out_g is not None:
            out_g[:-1] = g
            out_g[-1] = sum_s
        return
    g = np.empty(0, X.dtype) if out_g is None else out_g[:-1]
    sum_s, sum_Rs = _lr_hvp_fresh(X, y, w[:-1], w[-1], V[:-1], V[-1],
                                  X.dtype.type(1.0 / X.shape[0]), g, out_hv[:-1],
                                  out_g is not None)
    out_hv[-1] = sum_Rs
    if out_g is not None:
        out_g[-1] = sum_s


TWINS = {"sigmoid_ce": sigmoid_ce, "bias_leaky_relu": bias_leaky_relu,
         "ascent_project": ascent_project, "lr_rop": lr_rop, "lr_rop_block": lr_rop_block,
         "lr_forward_grad": lr_forward_grad, "lr_hvp_fresh": lr_hvp_fresh}
