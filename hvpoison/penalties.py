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

with ``e_k = exp(lam_k)``; ``sign(0) = 0`` is the subgradient used at the kink.
"""
from __future__ import annotations

KINDS = ("l2", "l1")


class Penalty:
    """A penalty of ``kind`` over the weight groups ``groups`` (a list of slices of ``w``).

    All methods take ``e = exp(lam)`` as a 1-D array with one entry per group, so that
    the exponential is computed once per point.
    """

    def __init__(self, kind: str, groups):
        if kind not in KINDS:
            raise ValueError(f"penalty: expected one of {KINDS} or None, got {kind!r}")
        self.kind = kind
        self.groups = list(groups)

    def __repr__(self):
        return f"Penalty({self.kind!r}, groups={len(self.groups)})"

    def _kernel(self, xp, w):
        """``(kernels, group)`` when the CUDA kernels apply (cupy arrays, kernels enabled),
        else None; ``group`` ``(P,)`` int32 maps each parameter to its group (-1: a bias)."""
        if xp.__name__ == "numpy":
            return None
        from . import kernels  # pragma: no cover - GPU only
        if not kernels.enabled() or len(self.groups) > 32:  # pragma: no cover - GPU only
            return None
        key = (w.shape[0], id(xp))  # pragma: no cover - GPU only
        if getattr(self, "_group_key", None) != key:  # pragma: no cover - GPU only
            import numpy as np

            group = np.full(w.shape[0], -1, dtype=np.int32)
            for k, g in enumerate(self.groups):
                group[g] = k
            self._group, self._group_key = xp.asarray(group), key
        return kernels, self._group  # pragma: no cover - GPU only

    def _omega_grad(self, xp, wk):
        return wk if self.kind == "l2" else xp.sign(wk)

    def value(self, xp, w, e):
        """``sum_k e_k Omega(w_k)``."""
        total = 0.0
        for k, g in enumerate(self.groups):
            wk = w[g]
            omega = 0.5 * (wk @ wk) if self.kind == "l2" else xp.abs(wk).sum()
            total = total + e[k] * omega
        return total

    def add_grad(self, xp, w, e, out):
        """``out += grad_w penalty``."""
        if (kern := self._kernel(xp, w)) is not None:  # pragma: no cover - GPU only
            return kern[0].penalty_add(xp, w, None, e, kern[1], out, self.kind == "l1")
        for k, g in enumerate(self.groups):
            out[g] += e[k] * self._omega_grad(xp, w[g])

    def add_hvp(self, xp, w, e, v, out):
        """``out += H_penalty v`` (zero for L1: the penalty is piecewise linear)."""
        if self.kind == "l2":
            if (kern := self._kernel(xp, w)) is not None:  # pragma: no cover - GPU only
                return kern[0].penalty_add(xp, w, v, e, kern[1], out, 2)
            for k, g in enumerate(self.groups):
                out[g] += e[k] * v[g]

    def dgrad_dlam(self, xp, w, e):
        """``M_lam = grad_lam grad_w penalty`` as a ``(P, G)`` matrix (column k lives on group k)."""
        M = xp.zeros((w.shape[0], len(self.groups)), dtype=w.dtype)
        for k, g in enumerate(self.groups):
            M[g, k] = e[k] * self._omega_grad(xp, w[g])
        return M

    def mixed_lam(self, xp, w, e, v):
        """``grad_lam (v^T grad_w penalty)``: one entry per group, shape ``(G,)``."""
        if (kern := self._kernel(xp, w)) is not None:  # pragma: no cover - GPU only
            return kern[0].penalty_mixed_lam(xp, w, v, e, kern[1], self.kind == "l1")
        return xp.stack([e[k] * (self._omega_grad(xp, w[g]) @ v[g])
                         for k, g in enumerate(self.groups)])
