"""Logistic regression ``f(x; w) = W^T x + b`` with its forward, backward and R-operator.

Derivation (``n`` rows, logit ``z = X W + b``; ``s`` the output seed ``dz``):

1. backward:   ``grad_W = X^T s``, ``grad_b = sum_i s_i``;       ``grad_X = s W^T``
2. R-forward:  ``R z = X V + v_b``                                (``v = (V, v_b)``)
3. R-backward: ``R s = curv * R z``; ``R grad_W = X^T R s``, ``R grad_b = sum_i R s_i``
4. mixed:      ``R grad_X = R s W^T + s V^T`` (only for the poisoning rows)

So ``H v`` costs two matrix-vector products with ``X``, the same as a gradient.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from .. import _checks
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

    def rop(self, w, tape, bwd, v, curv, out):
        xp = get_array_module(w)
        Rz = tape.X @ v[:-1]                           # line 2
        Rz += v[-1]
        Rs = curv * Rz                                 # line 3
        xp.matmul(Rs, tape.X, out=out[:-1])
        out[-1] = Rs.sum()
        return SimpleNamespace(Rs=Rs)

    blocked_rop = True

    def rop_block(self, w, tape, curv, V, out):
        """Lines 2-3 for ``k`` directions at once (the model part of ``H V``, Eq. 4), ``V``
        ``(P, k)`` into ``out`` ``(P, k)``: ``R Z = X V_W + v_b`` and ``X^T (curv * R Z)``
        as two GEMMs of width ``k``."""
        xp = get_array_module(w)
        RZ = tape.X @ V[:-1]                           # line 2, (n, k)
        RZ += V[-1]
        RZ *= curv[:, None]                            # line 3
        xp.matmul(tape.X.T, RZ, out=out[:-1])
        out[-1] = RZ.sum(axis=0)
        return out

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
