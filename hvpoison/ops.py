"""The fused element-wise and reduction steps of the engine and LR's fused products with
``X``, as readable array-module code, and the dispatch that may replace each by a CUDA
kernel or a numba twin of the same signature.

Every function here is the *reference*: plain ``xp`` code (numpy or cupy) that the tests
hold the kernels to. :func:`impl` is the one way the engine picks a step: while kernels
are enabled, the CUDA kernel (``kernels/*.cu``, :mod:`hvpoison.kernels`) for cupy arrays
and the numba twin (:mod:`hvpoison.kernels.cpu`) for numpy arrays when numba is installed
and the step has one; the reference otherwise. ``HVPOISON_KERNELS=0`` or
``with hvpoison.kernels.use_kernels(False)`` switches both off.

:mod:`hvpoison.kernels` is the top-level ``kernels/`` folder of the repository (mapped to
that name in ``setup.cfg``). An install provides it; a plain checkout (the repository on
``sys.path``, nothing installed) has no ``hvpoison/kernels``, so :func:`_kernels` loads
the folder under that name itself. Only without the folder (a wheel built without it) do
the references run everywhere.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
import sys
from pathlib import Path

import numpy as np

from .logistic import sigmoid, softplus

#: the repository's ``kernels/`` folder, :mod:`hvpoison.kernels` in a plain checkout
KERNELS_DIR = Path(__file__).resolve().parents[1] / "kernels"


def sigmoid_ce(xp, z, y, with_loss=True):
    """Mean cross-entropy of the logits ``z`` ``(n,)`` against ``y`` ``(n,)`` and its first
    two derivatives in ``z`` (Sect. III's loss; the residual and curvature of Eq. 4 / Alg. 1).

    Returns ``(loss, residual, curv)``: ``loss = mean(softplus(z) - y z)`` (a 0-d array; None
    when not ``with_loss``: Alg. 1's steps never need it, and on the CPU it is a separate
    pass), ``residual = (sigma(z) - y) / n`` and ``curv = sigma(z) (1 - sigma(z)) / n``,
    both ``(n,)``. The kernel computes the loss in the same pass either way.
    """
    n = z.shape[0]
    p = sigmoid(xp, z)
    loss = (softplus(xp, z) - y * z).mean() if with_loss else None
    return loss, (p - y) / n, p * (1 - p) / n


def bias_leaky_relu(xp, Z, b, slope):
    """MLP line M1 for one hidden layer: ``Z += b`` in place (``Z`` ``(n, m)``, ``b``
    ``(m,)``), ``D = phi'(Z)`` (1 or ``slope``) and ``A = Z * D``; returns ``(D, A)``."""
    Z += b
    D = xp.where(Z > 0, 1.0, slope).astype(Z.dtype)
    return D, Z * D


def ascent_project(xp, Xp, g, scale, lo, hi):
    """Alg. 2 line [A6]: ``Xp = clip(Xp + scale g, lo, hi)`` in place (``(n_p, d)`` each,
    ``scale = alpha / ||g||`` a float or a 0-d array); returns ``Xp``."""
    Xp += scale * g
    return xp.clip(Xp, lo, hi, out=Xp)


# -- the penalty of Eq. 1, sum_k e_k Omega(w_k) with e_k = exp(lam_k) ------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class Groups:
    """The penalty groups ``w_k`` of Eq. 1, fixed when the penalty is built.

    ``slices``: one slice of ``w`` ``(P,)`` per group (the references index with them);
    ``index``: ``(P,)`` int32 on the host, the group of each parameter (-1: a bias, never
    penalised), read-only (the kernels' view). Build with :meth:`of`.
    """

    slices: tuple
    index: np.ndarray
    _on: dict = dataclasses.field(default_factory=dict, init=False, repr=False)

    @classmethod
    def of(cls, slices, n_params=None) -> Groups:
        """Groups from the weight ``slices`` of a ``(n_params,)`` vector (default: the end
        of the last slice)."""
        slices = tuple(slices)
        index = np.full(slices[-1].stop if n_params is None else n_params, -1, np.int32)
        for k, g in enumerate(slices):
            index[g] = k
        index.flags.writeable = False
        return cls(slices, index)

    def __len__(self):
        return len(self.slices)

    def index_on(self, xp):
        """:attr:`index` as an ``xp`` array (copied to the device once per array module)."""
        if xp is np:
            return self.index
        if xp not in self._on:            # keyed by the module: a stand-in is not cupy
            self._on[xp] = xp.asarray(self.index)
        return self._on[xp]


def omega_grad(xp, wk, l1):
    """``Omega'(w_k)``: ``w_k`` for L2, ``sign(w_k)`` for L1 (``sign(0) = 0``)."""
    return xp.sign(wk) if l1 else wk


def penalty_grad_add(xp, w, e, groups, out, l1):
    """``out += grad_w`` of Eq. 1's penalty: ``out[w_k] += e_k Omega'(w_k)`` per group of
    ``groups`` (:class:`Groups`), ``Omega'`` = ``w`` (L2) or ``sign(w)`` (``l1``); ``w``,
    ``out`` ``(P,)``, ``e`` ``(G,)``; biases untouched. Returns ``out``."""
    for k, g in enumerate(groups.slices):
        out[g] += e[k] * omega_grad(xp, w[g], l1)
    return out


def penalty_hvp_add(xp, v, e, groups, out):
    """``out += H v`` of Eq. 1's L2 penalty: ``out[w_k] += e_k v_k`` (``v``, ``out``
    ``(P,)`` or ``(P, k)`` for ``k`` directions, ``e`` ``(G,)``). L1's is zero. Returns
    ``out``."""
    for k, g in enumerate(groups.slices):
        out[g] += e[k] * v[g]
    return out


def penalty_mixed_lam(xp, w, v, e, groups, l1):
    """``grad_lam (v^T grad_w)`` of Eq. 1's penalty (Alg. 1 [R2]): ``e_k Omega'(w_k)^T v_k``
    per group, shape ``(G,)`` (``w``, ``v`` ``(P,)``, ``e`` ``(G,)``)."""
    return xp.stack([e[k] * (omega_grad(xp, w[g], l1) @ v[g])
                     for k, g in enumerate(groups.slices)])


def lr_rop(xp, X, curv, v, out):
    """LR's lines 2-3 (``hvpoison/models/lr.py``) for one direction ``v = (v_W, v_b)``
    ``(d + 1,)`` on the kept tape ``X`` ``(n, d)``, ``curv`` ``(n,)``: ``R z = X v_W + v_b``,
    ``R s = curv * R z``, ``out[:d] = X^T R s``, ``out[d] = 1^T R s`` (``out`` ``(d + 1,)``);
    returns ``R s`` ``(n,)``. Here two matrix-vector products, two reads of ``X``; the numba
    twin reads each row once (Alg. 1's reverse step, Eq. 4's ``H v``)."""
    Rz = X @ v[:-1]
    Rz += v[-1]
    Rs = curv * Rz
    xp.matmul(Rs, X, out=out[:-1])
    out[-1] = Rs.sum()
    return Rs


def lr_rop_block(xp, X, curv, V, out):
    """LR's lines 2-3 for ``k`` directions ``V`` ``(d + 1, k)`` on the kept tape ``X``
    ``(n, d)``, ``curv`` ``(n,)``, into ``out`` ``(d + 1, k)`` (the model part of Eq. 4's
    ``H V``): ``R Z = X V_W + v_b`` and ``X^T (curv * R Z)`` as two GEMMs of width ``k``,
    the second formed as ``(R S^T X)^T``, a C-order ``(k, d)`` result (OpenBLAS runs that up
    to 2x faster in float64 than ``X^T R S`` into ``(d, k)``). Returns ``out``. The numba
    twin reads each row of ``X`` once for all ``k`` directions."""
    RZ = X @ V[:-1]                                    # line 2, (n, k)
    RZ += V[-1]
    RZ *= curv[:, None]                                # line 3
    out[:-1] = (RZ.T @ X).T
    out[-1] = RZ.sum(axis=0)
    return out


def lr_forward_grad(xp, X, y, w, out):
    """LR's forward pass, the logistic unit's residual and curvature, and line 1
    (``hvpoison/models/lr.py``) at ``w = (W, b)`` ``(d + 1,)`` on ``X`` ``(n, d)``, ``y``
    ``(n,)``: ``z = X W + b``, ``(residual, curv)`` of :func:`sigmoid_ce` on ``z`` (the
    dispatched step), ``out[:d] = X^T residual``, ``out[d] = 1^T residual`` (``out``
    ``(d + 1,)``: the loss part of Eq. 6's ``g``); returns ``(z, residual, curv)``, ``(n,)``
    each. Here two matrix-vector products, two reads of ``X``; the numba twin reads each
    row once (Alg. 1's forward step [F], every step of gradient-descent training)."""
    z = X @ w[:-1]
    z += w[-1]
    _, residual, curv = impl("sigmoid_ce", xp)(xp, z, y, with_loss=False)
    xp.matmul(residual, X, out=out[:-1])
    out[-1] = residual.sum()
    return z, residual, curv


# -- LR's pairs of products with X, one read each (hvpoison/models/lr.py) ----------------------
#: bytes of ``X`` per row chunk of the fused pairs of products on the CPU (about L2-sized:
#: the second product of a pair reads the chunk from cache)
CHUNK_BYTES = 3 << 19

#: an ``X`` of at most this many bytes is not chunked: it stays in the last-level cache
#: between the two products of a pair, and two whole matrix-vector products are then
#: faster than the chunk loop (LR 1000 x 784: 0.19 against 0.23 ms per pair, float64)
RESIDENT_BYTES = 16 << 20


def row_chunks(X):
    """Row slices of ``X`` ``(n, d)`` of about :data:`CHUNK_BYTES` each; one slice when
    ``X`` has at most :data:`RESIDENT_BYTES`."""
    if X.nbytes <= RESIDENT_BYTES:
        return [slice(0, X.shape[0])]
    step = max(1, CHUNK_BYTES // max(1, X.shape[1] * X.itemsize))
    return [slice(i, i + step) for i in range(0, X.shape[0], step)]


def x_pair(xp, X, a, b):
    """``(X a, X b)``, ``(n,)`` each, for ``a``, ``b`` ``(d,)`` with one read of ``X``:
    chunked on the CPU (:func:`row_chunks`), one ``(n, d) @ (d, 2)`` GEMM elsewhere."""
    if xp is not np:
        Z = X @ xp.stack([a, b], axis=1)
        return xp.ascontiguousarray(Z[:, 0]), xp.ascontiguousarray(Z[:, 1])
    za, zb = np.empty(X.shape[0], dtype=X.dtype), np.empty(X.shape[0], dtype=X.dtype)
    for c in row_chunks(X):
        np.matmul(X[c], a, out=za[c])
        np.matmul(X[c], b, out=zb[c])
    return za, zb


def xt_pair(xp, X, s, r, out_s, out_r):
    """``X^T s`` into ``out_s`` and ``X^T r`` into ``out_r`` (``(d,)`` each) for ``s``,
    ``r`` ``(n,)`` with one read of ``X``: chunked on the CPU, one ``[s r]^T X`` GEMM
    elsewhere."""
    if xp is not np:
        G = xp.stack([s, r]) @ X
        out_s[...], out_r[...] = G[0], G[1]
        return
    out_s[...] = 0
    out_r[...] = 0
    part = np.empty(X.shape[1], dtype=X.dtype)
    for c in row_chunks(X):
        out_s += np.matmul(s[c], X[c], out=part)
        out_r += np.matmul(r[c], X[c], out=part)


def x_block(xp, X, W, V):
    """``(X W, X V)``, ``(n,)`` and ``(n, k)``, for ``W`` ``(d,)`` and ``V`` ``(d, k)`` as
    one ``X [W V]`` ``(n, d) @ (d, 1 + k)`` GEMM (one read of ``X``)."""
    WV = xp.empty((X.shape[1], 1 + V.shape[1]), dtype=W.dtype)
    WV[:, 0] = W
    WV[:, 1:] = V
    ZZ = X @ WV
    return ZZ[:, 0], ZZ[:, 1:]


def xt_block(xp, X, s, RS, out_s, out_R):
    """``X^T s`` into ``out_s`` ``(d,)`` and ``X^T RS`` into ``out_R`` ``(d, k)`` for ``s``
    ``(n,)``, ``RS`` ``(n, k)`` as one ``[s RS]^T X`` ``(1 + k, n) @ (n, d)`` GEMM."""
    S = xp.empty((1 + RS.shape[1], s.shape[0]), dtype=s.dtype)
    S[0] = s
    S[1:] = RS.T
    G = S @ X
    out_s[...] = G[0]
    out_R[...] = G[1:].T


def lr_hvp_fresh(xp, X, y, w, V, out_g, out_hv):
    """LR's ``H V`` at a fresh point ``w = (W, b)`` for one direction ``v`` ``(d + 1,)`` or
    ``k`` directions ``V`` ``(d + 1, k)`` on ``X`` ``(n, d)``, ``y`` ``(n,)``
    (``hvpoison/models/lr.py``, lines 1-3): ``z = X W + b`` and ``R z = X V_W + v_b``
    (:func:`x_pair`; :func:`x_block`), the sigmoid unit's residual and curvature (the
    dispatched :func:`sigmoid_ce`), ``R s = curv * R z``, then ``out_hv = (X^T R s, 1^T R
    s)`` and, unless ``out_g`` is None, ``out_g = (X^T residual, 1^T residual)`` with it
    (:func:`xt_pair`; :func:`xt_block`); ``out_g`` ``(d + 1,)``, ``out_hv`` as ``V``. Here
    two reads of ``X``; the numba twin reads each row once."""
    if V.ndim == 1:
        z, Rz = x_pair(xp, X, w[:-1], V[:-1])
        z += w[-1]
        Rz += V[-1]
    else:
        z, Rz = x_block(xp, X, w[:-1], V[:-1])
        z, Rz = z + w[-1], Rz + V[-1]
    _, residual, curv = impl("sigmoid_ce", xp)(xp, z, y, with_loss=False)
    Rs = curv * Rz if V.ndim == 1 else curv[:, None] * Rz
    if out_g is not None:
        (xt_pair if V.ndim == 1 else xt_block)(xp, X, residual, Rs, out_g[:-1], out_hv[:-1])
        out_g[-1] = residual.sum()
    elif V.ndim == 1:
        xp.matmul(Rs, X, out=out_hv[:-1])
    else:
        out_hv[:-1] = (Rs.T @ X).T                     # (k, d) in C order: see lr_rop_block
    out_hv[-1] = Rs.sum(axis=0)


REFERENCE = {"sigmoid_ce": sigmoid_ce, "bias_leaky_relu": bias_leaky_relu,
             "ascent_project": ascent_project, "penalty_grad_add": penalty_grad_add,
             "penalty_hvp_add": penalty_hvp_add, "penalty_mixed_lam": penalty_mixed_lam,
             "lr_rop": lr_rop, "lr_rop_block": lr_rop_block, "lr_forward_grad": lr_forward_grad,
             "lr_hvp_fresh": lr_hvp_fresh}


# -- dispatch ---------------------------------------------------------------------------------
def _load_folder(folder):
    """Load ``folder/__init__.py`` as the package :mod:`hvpoison.kernels` (registered in
    ``sys.modules``, so ``from . import cpu`` inside it works); None without the folder."""
    init = Path(folder) / "__init__.py"
    if not init.is_file():
        return None
    name = f"{__package__}.kernels"
    spec = importlib.util.spec_from_file_location(name, init,
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    setattr(sys.modules[__package__], "kernels", module)
    return module


@functools.lru_cache(maxsize=None)
def _kernels():
    """:mod:`hvpoison.kernels`: installed, else the checkout's ``kernels/`` folder loaded
    under that name, else None (a wheel without it: the references run)."""
    try:
        from . import kernels
    except ImportError:          # a plain checkout: hvpoison/ has no kernels/
        return _load_folder(KERNELS_DIR)
    return kernels


def impl(name, xp):
    """The function to run for ``name`` (a key of :data:`REFERENCE`) on arrays of module
    ``xp``: a CUDA kernel (cupy) or a numba twin (numpy, when numba imports and ``name``
    has one) while kernels are enabled, else the reference. Each has the reference's
    signature."""
    _k = _kernels()
    if _k is None or not _k.enabled():
        return REFERENCE[name]
    if xp is not np:              # ops with no CUDA kernel (kernels.CPU_ONLY): the reference
        return REFERENCE[name] if name in _k.CPU_ONLY else getattr(_k, name)  # pragma: no cover
    return _k.cpu_twins().get(name, REFERENCE[name])
