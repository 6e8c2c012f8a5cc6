"""L2 and L1 penalties with log-scale strengths, ``sum_k exp(lam_k) Omega(w_k)`` (Eq. 1).

``w_k`` is the group of parameters governed by ``lam_k``: all weights of the model (one
scalar ``lam``), or the weights of layer ``k`` (``per_layer``).  **Biases are never
penalised** (the paper does not say; penalising a bias shifts the decision threshold,
which is not what weight decay is meant to do).

=====  ======================  ====================  ================  ============================
kind   ``Omega(w_k)``          gradient              ``H v``           ``d/d lam_k (v^T grad)``
=====  ======================  ====================  ================  ============================
l2     ``1/2 ||w_k||^2``       ``e_k w_k``           ``e_k v_k``       ``e_k w_k^T v_k``
l1     ``||w_k||_1``           ``e_k sign(w_k)``     ``0``             ``e_k sign(w_k)^T v_k``
=====  ======================  ====================  ================  ============================

with ``e_k = exp(lam_k)``; ``sign(0) = 0`` is the subgradient used at the kink. The
gradient, ``H v`` and the last column run through :func:`hvpoison.ops.impl`
(``penalty_grad_add``, ``penalty_hvp_add``, ``penalty_mixed_lam``: CUDA kernels on cupy
arrays, the references otherwise).
"""
from __future__ import annotations

from . import ops
from .backend import get_array_module

KINDS = ("l2", "l1")


class Penalty:
    """A penalty of ``kind`` over the weight groups ``groups`` (slices of ``w`` ``(P,)``,
    ``P = n_params``, by default the end of the last group), held as one
    :class:`hvpoison.ops.Groups`.

    All methods take ``e = exp(lam)`` as a 1-D array with one entry per group, so that
    the exponential is computed once per point.
    """

    def __init__(self, kind: str, groups, n_params=None):
        if kind not in KINDS:
            raise ValueError(f"penalty: expected one of {KINDS} or None, got {kind!r}")
        self.kind = kind
        self.l1 = kind == "l1"
        self.groups = ops.Groups.of(groups, n_params)

    def __repr__(self):
        return f"Penalty({self.kind!r}, groups={len(self.groups)})"

    # -- lam in its one internal form: e = exp(lam) per group ---------------------------
    def exp_lam(self, vec):
        """``e = exp(lam)`` of Eq. 1 per group, ``(G,)``, from ``vec`` ``(n_lam,)`` (on its
        device, unchecked): one value per group, or one shared value (``n_lam = 1``)
        repeated over the groups."""
        xp = get_array_module(vec)
        if vec.shape[0] == 1 and len(self.groups) > 1:
            vec = xp.repeat(vec, len(self.groups))
        return xp.exp(vec)

    @staticmethod
    def reduce_lam(per_group, shape):
        """Per-group derivatives ``d/d lam_k`` ``(G,)`` (Eq. 4's ``M_lam^T v``) back to
        ``lam``'s ``shape``: ``()`` or ``(1,)`` (a shared ``lam``) sums its groups."""
        if shape == ():
            return per_group.sum()
        if shape == (1,):
            return per_group.sum(keepdims=True)
        return per_group

    def value(self, xp, w, e):
        """``sum_k e_k Omega(w_k)``."""
        total = 0.0
        for k, g in enumerate(self.groups.slices):
            wk = w[g]
            omega = xp.abs(wk).sum() if self.l1 else 0.5 * (wk @ wk)
            total = total + e[k] * omega
        return total

    def add_grad(self, xp, w, e, out):
        """``out += grad_w penalty``."""
        ops.impl("penalty_grad_add", xp)(xp, w, e, self.groups, out, self.l1)

    def add_hvp(self, xp, w, e, v, out):
        """``out += H_penalty v`` (zero for L1: the penalty is piecewise linear); ``v``,
        ``out`` ``(P,)`` or ``(P, k)``."""
        if not self.l1:
            ops.impl("penalty_hvp_add", xp)(xp, v, e, self.groups, out)

    def dgrad_dlam(self, xp, w, e):
        """``M_lam = grad_lam grad_w penalty`` as a ``(P, G)`` matrix (column k lives on group k)."""
        M = xp.zeros((w.shape[0], len(self.groups)), dtype=w.dtype)
        for k, g in enumerate(self.groups.slices):
            M[g, k] = e[k] * ops.omega_grad(xp, w[g], self.l1)
        return M

    def mixed_lam(self, xp, w, e, v):
        """``grad_lam (v^T grad_w penalty)``: one entry per group, shape ``(G,)``."""
        return ops.impl("penalty_mixed_lam", xp)(xp, w, v, e, self.groups, self.l1)
