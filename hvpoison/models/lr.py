"""Logistic regression ``f(x; w) = W^T x + b`` with its forward, backward and R-operator.

Derivation (``n`` rows, logit ``z = X W + b``; ``s`` the output seed ``dz``):

1. backward:   ``grad_W = X^T s``, ``grad_b = sum_i s_i``;       ``grad_X = s W^T``
2. R-forward:  ``R z = X V + v_b``                                (``v = (V, v_b)``)
3. R-backward: ``R s = curv * R z``; ``R grad_W = X^T R s``, ``R grad_b = sum_i R s_i``
4. mixed:      ``R grad_X = R s W^T + s V^T`` (only for the poisoning rows)

So ``H v`` costs two matrix-vector products with ``X``, the same as a gradient. Lines 2-3
are linear in ``v``: ``m`` directions ``V`` ``(P, m)`` take two GEMMs of width ``m``
(:meth:`LR.rop_block`). At a fresh point :meth:`LR.forward_r` forms ``z`` and ``R z`` as one
``X [W  V_W]`` ``(n, d) @ (d, 1 + m)`` product and :meth:`LR.backward_r` the gradient and
``H v`` as one ``[s  R s]^T X``, so ``grad`` and ``H v`` together read ``X`` twice.
For one direction on the CPU each pair of products runs over row chunks of ``X`` small
enough to stay in cache between its two matrix-vector products
(:func:`hvpoison.ops.x_pair`, :data:`hvpoison.ops.CHUNK_BYTES`; an ``X`` that fits the
last-level cache, :data:`hvpoison.ops.RESIDENT_BYTES`, is read whole):
OpenBLAS's ``(n, d) @ (d, 2)`` GEMM packs ``X`` first and costs more than two plain
matrix-vector products, while the chunked pair reads ``X`` from memory once
(``bench/bench_hvp_jax.py``).
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from .. import _checks, ops
from ..backend import get_array_module
from .base import Model


class LR(Model):
    """Binary logistic regression on ``n_features`` inputs; ``init`` gives zeros (paper, Sect. V).

    Parameters: ``W`` of shape ``(d, 1)`` and ``b`` of shape ``(1,)``; ``P = d + 1``.
    """

    def __init__(self, n_features: int):
        d = _checks.positive_int("n_features", n_features)
        self.shapes = [(d, 1)]
        self._layout()

    def __repr__(self):
        return f"LR(n_features={self.n_features})"

    def init(self, seed=None, dtype=np.float64, device=None):
        """``initW`` of Alg. 2 for LR: zeros of shape ``(P,)`` (``seed`` is accepted for a
        uniform contract and unused)."""
        xp = get_array_module(device=device)
        return xp.zeros(self.n_params, dtype=self._check_dtype(dtype))

    # -- the derivative contract (see models/base.py) --------------------------------
    def forward(self, w, X):
        W = w[:-1]
        z = X @ W
        z += w[-1]
        return SimpleNamespace(X=X, z=z)

    def backward(self, w, tape, dz, out):
        if out is not None:
            xp = get_array_module(w)
            xp.matmul(dz, tape.X, out=out[:-1])       # line 1: X^T s
            out[-1] = dz.sum()
        return SimpleNamespace(s=dz)

    def forward_grad(self, w, X, y, out):
        """The forward pass, the logistic unit's residual and curvature, and line 1 into
        ``out`` ``(P,)`` as the fused op :func:`hvpoison.ops.lr_forward_grad` (its numba
        twin reads ``X`` once); returns ``(tape, bwd, residual, curv)``, as
        :meth:`Model.forward_grad <hvpoison.models.base.Model.forward_grad>`. (Eq. 6's
        ``g``.)"""
        xp = get_array_module(w)
        z, residual, curv = ops.impl("lr_forward_grad", xp)(xp, X, y, w, out)
        return SimpleNamespace(X=X, z=z), SimpleNamespace(s=residual), residual, curv

    def rop(self, w, tape, bwd, v, curv, out):
        """Lines 2-3 for ``v`` ``(P,)``: ``rbackward(rforward(v))`` as the fused op
        :func:`hvpoison.ops.lr_rop` (its numba twin reads ``X`` once); returns ``rbwd``
        (``Rs`` ``(n,)``). (Eq. 4's ``H v``, R-operator.)"""
        xp = get_array_module(w)
        return SimpleNamespace(Rs=ops.impl("lr_rop", xp)(xp, tape.X, curv, v, out))

    def rforward(self, w, tape, V):
        """Line 2, ``R z = X V_W + v_b``, for ``v`` ``(P,)`` or ``V`` ``(P, m)`` on a kept
        tape; returns ``rtape`` with ``Rz`` ``(n,)`` or ``(n, m)``. (Eq. 4's ``H v``,
        R-operator.)"""
        Rz = tape.X @ V[:-1]
        Rz += V[-1]
        return SimpleNamespace(Rz=Rz)

    def rbackward(self, w, tape, bwd, rtape, curv, out):
        """Line 3, ``R s = curv * R z``, ``R grad_W = X^T R s``, ``R grad_b = 1^T R s``, into
        ``out`` (``(P,)`` or ``(P, m)``, as ``rtape``); ``curv`` ``(n,)``; returns ``rbwd``
        (``Rs`` ``(n,)`` or ``(n, m)``). ``bwd`` is unused (line 3 needs no ``s``). (Eq. 4's
        ``H v``, R-operator.)"""
        xp = get_array_module(w)
        Rz = rtape.Rz
        if Rz.ndim == 1:
            Rs = curv * Rz
            xp.matmul(Rs, tape.X, out=out[:-1])
        else:
            Rs = curv[:, None] * Rz
            out[:-1] = (Rs.T @ tape.X).T               # (m, d) in C order: see rop_block
        out[-1] = Rs.sum(axis=0)
        return SimpleNamespace(Rs=Rs)

    blocked_rop = True

    def rop_block(self, w, tape, curv, V, out, bwd=None):
        """Lines 2-3 for ``k`` directions at once (the model part of ``H V``, Eq. 4), ``V``
        ``(P, k)`` into ``out`` ``(P, k)``, as the fused op :func:`hvpoison.ops.lr_rop_block`:
        ``R Z = X V_W + v_b`` and ``X^T (curv * R Z)`` (two GEMMs of width ``k``; the numba
        twin reads each row of ``X`` once for all ``k``). ``bwd`` is accepted for a uniform
        contract, unused."""
        xp = get_array_module(w)
        return ops.impl("lr_rop_block", xp)(xp, tape.X, curv, V, out)

    def hvp_fresh(self, w, X, y, V, out_g, out_hv):
        """The fused op :func:`hvpoison.ops.lr_hvp_fresh` for ``v`` ``(P,)`` or ``V`` ``(P,
        m)``: the forward pass, lines 2-3 and, with ``out_g``, line 1 (its numba twin reads
        ``X`` once); the same products as :meth:`forward_r` + :meth:`backward_r`. (Eq. 4's
        ``H v`` at a fresh point.)"""
        xp = get_array_module(w)
        ops.impl("lr_hvp_fresh", xp)(xp, X, y, w, V, out_g, out_hv)

    def forward_r(self, w, X, V):
        """The forward pass and line 2 at a fresh point, ``X`` ``(n, d)``, ``V`` ``(P,)`` or
        ``(P, m)``, with one read of ``X``: ``X [W V_W]`` ``(n, d) @ (d, 1 + m)`` (for one
        ``v`` on the CPU a chunked pair of matrix-vector products); returns ``(tape,
        rtape)``, equal to ``(forward(w, X), rforward(w, tape, V))`` to rounding. (Eq. 4's
        ``H v``, R-operator.)"""
        xp = get_array_module(w)
        if V.ndim == 1:
            z, Rz = ops.x_pair(xp, X, w[:-1], V[:-1])
            z += w[-1]
            Rz += V[-1]
            return SimpleNamespace(X=X, z=z), SimpleNamespace(Rz=Rz)
        z, Rz = ops.x_block(xp, X, w[:-1], V[:-1])     # [z - b, R z - v_b]
        return SimpleNamespace(X=X, z=z + w[-1]), SimpleNamespace(Rz=Rz + V[-1])

    def backward_r(self, w, tape, dz, rtape, curv, out_g, out_hv):
        """Lines 1 and 3 together for ``dz = residual`` and ``curv`` ``(n,)`` (the loss's on
        ``tape.z``): ``X^T s`` into ``out_g`` ``(P,)`` and ``R{grad_w}`` into ``out_hv``
        (``(P,)`` or ``(P, m)``, as ``rtape``) with one read of ``X``: ``[s R s]^T X`` ``(1
        + m, n) @ (n, d)`` (for one ``v`` on the CPU a chunked pair); with ``out_g=None``
        line 3 alone (:meth:`rbackward`). Returns ``(bwd, rbwd)``. (Eq. 4's ``H v``,
        R-operator.)"""
        bwd = self.backward(w, tape, dz, None)
        if out_g is None:
            return bwd, self.rbackward(w, tape, bwd, rtape, curv, out_hv)
        xp, Rz = get_array_module(w), rtape.Rz
        if Rz.ndim == 1:
            Rs = curv * Rz                             # line 3
            ops.xt_pair(xp, tape.X, dz, Rs, out_g[:-1], out_hv[:-1])
        else:
            Rs = curv[:, None] * Rz                    # line 3
            ops.xt_block(xp, tape.X, dz, Rs, out_g[:-1], out_hv[:-1])   # [s R s]^T X
        out_g[-1] = dz.sum()
        out_hv[-1] = Rs.sum(axis=0)
        return bwd, SimpleNamespace(Rs=Rs)

    low_rank_hessian = True

    def hessian_factor(self, w, tape, curv):
        """``U = A^T diag(sqrt(curv))`` ``(P, n)``, ``A = [X 1]``: lines 2-3 say the model
        part of Eq. 4's ``H`` is ``A^T diag(curv) A = U U^T`` (``curv >= 0``, ``(n,)``), of
        rank ``<= n``."""
        xp = get_array_module(w)
        s = xp.sqrt(curv)
        return xp.concatenate([tape.X.T * s, s[None, :]], axis=0)

    def mixed_x(self, w, bwd, rbwd, v, rows):
        xp = get_array_module(w)
        s, Rs = (bwd.s, rbwd.Rs) if rows is None else (bwd.s[rows], rbwd.Rs[rows])
        # line 4 as one (n_p x 2) @ (2 x d) product: a single BLAS call and one allocation
        return xp.stack([Rs, s], axis=1) @ xp.stack([w[:-1], v[:-1]])
