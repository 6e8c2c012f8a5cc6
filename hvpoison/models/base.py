"""What every model shares: the flat parameter layout and the derivative contract.

Parameters live in one flat vector ``w`` of length ``P`` laid out layer by layer as
``[W_1.ravel(), b_1, W_2.ravel(), b_2, ...]`` with ``W_k`` of shape ``(fan_in, fan_out)``
in C order, so :meth:`Model.unpack` returns views, never copies.

The derivative contract (implemented by :class:`~hvpoison.models.LR` and
:class:`~hvpoison.models.MLP`) is four pure functions over one forward pass:

``forward(w, X) -> tape``
    keeps what the reverse passes need; ``tape.z`` is the ``(n,)`` logit.
``backward(w, tape, dz, out) -> bwd``
    writes ``grad_w sum_i dz_i z_i`` into ``out`` (``P``) and returns the per-layer
    backward state (``bwd.delta1``: ``d sum_i dz_i z_i / d Z_1``, ``n x h_1``). With
    ``out=None`` only the backward state is formed, without the weight-gradient products
    (``a_{k-1}^T delta_k``): what an R pass needs when the gradient itself is not wanted,
    which saves the ``X^T delta_1`` pass over the data of a lone ``H v``.
``rop(w, tape, bwd, v, curv, out) -> rbwd``
    Pearlmutter's R-operator ``R_v{.} = d/dr (.)(w + r v)|_{r=0}`` applied to the
    backward pass whose output-layer seed is ``dz = residual``: writes
    ``R_v{grad_w}`` into ``out`` given ``R_v{dz} = curv * R_v{z}``.
``mixed_x(w, bwd, rbwd, v, rows) -> (len(rows), d)``
    ``R_v{grad_X} = grad_X (v^T grad_w)`` for the selected rows only.
"""
from __future__ import annotations

import numpy as np

from .. import _checks
from ..backend import get_array_module


class Model:
    """Base class: flat-vector bookkeeping for a stack of dense layers."""

    #: ``[(fan_in, fan_out), ...]`` for every dense layer, set by subclasses.
    shapes: list

    def _layout(self):
        offsets, start = [], 0
        for fan_in, fan_out in self.shapes:
            w_end = start + fan_in * fan_out
            offsets.append((start, w_end, w_end + fan_out))
            start = w_end + fan_out
        self._offsets = offsets
        self.n_params = start

    @property
    def n_features(self) -> int:
        return self.shapes[0][0]

    @property
    def n_layers(self) -> int:
        return len(self.shapes)

    @property
    def weight_slices(self):
        """Slices of ``w`` holding each layer's weights (the penalty groups; biases excluded)."""
        return [slice(a, b) for a, b, _ in self._offsets]

    def unpack(self, w):
        """``[(W_1, b_1), ..., (W_L, b_L)]`` as views into ``w`` ``(P,)``; ``W_k`` is
        ``(fan_in, fan_out)``, ``b_k`` ``(fan_out,)``; the groups ``w_k`` of Eq. 1."""
        return [
            (w[a:b].reshape(fi, fo), w[b:c])
            for (a, b, c), (fi, fo) in zip(self._offsets, self.shapes)
        ]

    # -- predictions -----------------------------------------------------------------
    def _check_wX(self, w, X):
        _checks.params("w", w, self.n_params)
        _checks.features("X", X, self.n_features, w.dtype)

    def decision_function(self, w, X):
        """Logits ``f(X; w)`` of Sect. V's models for ``X`` ``(n, d)``, shape ``(n,)``."""
        self._check_wX(w, X)
        return self.forward(w, X).z

    def predict_proba(self, w, X):
        """``sigma(f(X; w))``, the probability of class 1 (Sect. III's ``CE(y, sigma(f))``),
        shape ``(n,)``."""
        from ._logistic import sigmoid

        return sigmoid(get_array_module(w), self.decision_function(w, X))

    def predict(self, w, X):
        """Hard labels in {0, 1} (``f > 0``), shape ``(n,)``, integer dtype (Sect. V's
        test error compares them with ``y``)."""
        return (self.decision_function(w, X) > 0).astype(np.int64)

    # -- the derivative contract (Sect. IV; derivations in each model's module) ------
    def forward(self, w, X):
        """Forward pass ``f(X; w)`` (Sect. III) for ``w`` ``(P,)`` and ``X`` ``(n, d)``;
        returns the tape with the logit ``tape.z`` ``(n,)``, kept by Alg. 1's forward loop."""
        raise NotImplementedError

    def backward(self, w, tape, dz, out):
        """Backward pass (derivation line 1): ``grad_w sum_i dz_i z_i`` into ``out``
        ``(P,)`` for the seed ``dz`` ``(n,)`` (the gradient ``g`` of Eq. 6); returns the
        per-layer state (only that, without the products, when ``out`` is None)."""
        raise NotImplementedError

    def rop(self, w, tape, bwd, v, curv, out):
        """R-operator (lines 2-3): ``R_v{grad_w}`` into ``out`` ``(P,)`` for ``v`` ``(P,)``
        with ``R_v{dz} = curv * R_v{z}``, ``curv`` ``(n,)``; the model part of ``H v``
        (Eq. 4, Alg. 1 [R3])."""
        raise NotImplementedError

    blocked_rop = False     # True: rop_block computes k directions in one pass

    def rop_block(self, w, tape, curv, V, out):
        """Lines 2-3 for ``V`` ``(P, k)`` at once into ``out`` ``(P, k)``: the model part of
        ``H V`` (Eq. 4), for models with ``blocked_rop``."""
        raise NotImplementedError

    low_rank_hessian = False    # True: hessian_factor gives the model part of H as U U^T

    def hessian_factor(self, w, tape, curv):
        """``U`` ``(P, n)`` with the model part of ``H`` (Eq. 4) equal to ``U U^T``, for
        models with ``low_rank_hessian`` (a GLM: one curvature per row)."""
        raise NotImplementedError

    def mixed_x(self, w, bwd, rbwd, v, rows):
        """Mixed product (line 4) ``grad_X (v^T grad_w)`` for ``rows``, shape
        ``(len(rows), d)`` (``(n, d)`` for None): ``M_X^T v`` of Eq. 4 / Alg. 1 [R1]."""
        raise NotImplementedError

    def _check_dtype(self, dtype):
        return _checks.floating_dtype("dtype", dtype)
