"""What every model shares: the flat parameter layout and the derivative contract.

Parameters live in one flat vector ``w`` of length ``P`` laid out layer by layer as
``[W_1.ravel(), b_1, W_2.ravel(), b_2, ...]`` with ``W_k`` of shape ``(fan_in, fan_out)``
in C order, so :meth:`Model.unpack` returns views, never copies.

The derivative contract (implemented by :class:`~hvpoison.models.LR` and
:class:`~hvpoison.models.MLP`) is a set of pure functions over one forward pass. The
R-operator ``R_v{.} = d/dr (.)(w + r v)|_{r=0}`` (Pearlmutter) is split into its
derivation lines (each model's module docstring: line 1 backward, 2 R-forward, 3
R-backward, 4 mixed) so that the products with the data ``X`` can be fused. Wherever a
direction is taken, it is ``v`` ``(P,)`` or a block ``V`` ``(P, m)`` (then every ``R``
result has ``m`` columns: lines 2-3 are linear in ``v``); ``residual`` and ``curv`` are
``(n,)``, from the loss on ``tape.z`` (``hvpoison.ops.sigmoid_ce(xp, z, y,
with_loss=False)``).

``forward(w, X) -> tape``
    keeps what the reverse passes need; ``tape.z`` is the ``(n,)`` logit.
``backward(w, tape, dz, out) -> bwd``
    line 1: writes ``grad_w sum_i dz_i z_i`` into ``out`` (``P``) and returns the per-layer
    backward state (``bwd.delta1``: ``d sum_i dz_i z_i / d Z_1``, ``n x h_1``). With
    ``out=None`` only the backward state is formed, without the weight-gradient products
    (``a_{k-1}^T delta_k``): what an R pass needs when the gradient itself is not wanted,
    which saves the ``X^T delta_1`` pass over the data of a lone ``H v``.
``forward_grad(w, X, y, out) -> (tape, bwd, residual, curv)``
    ``forward``, the loss's ``residual`` and ``curv`` on ``tape.z`` for the labels ``y``
    ``(n,)``, and ``backward(w, tape, residual, out)``: a training step's point and
    gradient (Alg. 1's [F]). The default runs the three in turn; LR fuses them into one
    read of ``X`` (``ops.lr_forward_grad``).
``rforward(w, tape, V) -> rtape``
    line 2 on a kept tape: ``rtape.Rz = R_V{z}``, ``(n,)`` or ``(n, m)`` (``rtape`` keeps
    a reference to ``V``). Reads ``X`` once (``X V_1``).
``rbackward(w, tape, bwd, rtape, curv, out) -> rbwd``
    line 3 for the backward pass seeded with ``dz = residual``: writes ``R_V{grad_w}`` into
    ``out`` (``(P,)`` or ``(P, m)``, as ``rtape``) given ``R_V{dz} = curv * R_V{z}`` and
    ``bwd`` from ``backward(w, tape, residual, ...)``. Reads ``X`` once (``X^T R delta_1``).
``rop(w, tape, bwd, v, curv, out) -> rbwd``
    ``rbackward(w, tape, bwd, rforward(w, tape, v), curv, out)`` for ``v`` ``(P,)``.
``rop_block(w, tape, curv, V, out, bwd=None) -> out``
    the same for ``V`` ``(P, m)`` into ``out`` ``(P, m)`` in one R pass (GEMMs of width
    ``m h_1`` with ``X``), for models with ``blocked_rop``. ``bwd`` is required by models
    whose line 3 uses the deltas (the MLP; LR ignores it).
``forward_r(w, X, V) -> (tape, rtape)``
    ``forward`` and line 2 at a fresh point, the first layer's products as one GEMM
    ``X [W_1  V_1]`` (one read of ``X``); the same numbers as ``forward`` + ``rforward``.
``backward_r(w, tape, dz, rtape, curv, out_g, out_hv) -> (bwd, rbwd)``
    lines 1 and 3 together: the gradient into ``out_g`` ``(P,)`` and ``R_V{grad_w}`` into
    ``out_hv``, the first layer's weight products as one GEMM ``X^T [delta_1  R delta_1]``
    (one read of ``X``); with ``out_g=None`` the deltas and line 3 only (``X^T R
    delta_1``), i.e. ``backward(..., None)`` + ``rbackward``.
``hvp_fresh(w, X, y, V, out_g, out_hv)``
    ``forward_r``, the loss, ``backward_r``: ``H V`` (and the gradient) at a fresh point;
    LR fuses one direction into one read of ``X`` (``ops.lr_hvp_fresh``).
``forward_grad_many(W, X, y, out) -> z``
    ``forward_grad`` for ``K`` independent parameter vectors ``W`` ``(K, P)`` on one ``X``:
    each start's gradient (less the penalty) into ``out`` ``(K, P)``, the logits ``(K, n)``
    returned (GD's several starts trained in step, :meth:`GD.fit_many
    <hvpoison.victims.gd.GD.fit_many>`). The default runs one ``forward_grad`` per start;
    the MLP reads ``X`` once per pass for all ``K`` (``X [W_1^1 ... W_1^K]``).
``mixed_x(w, bwd, rbwd, v, rows) -> (len(rows), d)``
    line 4: ``R_v{grad_X} = grad_X (v^T grad_w)`` for the selected rows only (``v``
    ``(P,)``).

Reads of ``X`` at a fresh point (the cost at large ``n``): the gradient by ``forward`` +
``backward``: 2 (LR's ``forward_grad``: 1); ``H v`` by ``forward`` +
``backward(None)`` + ``rop``: 3; by ``forward_r`` + ``backward_r(out_g=None)``: 2;
gradient and ``H v`` by ``forward_r`` + ``backward_r``: 2 (4 separately). The penalty's
part of the products (``Penalty.add_grad`` / ``add_hvp``) is the caller's.
"""
from __future__ import annotations

import numpy as np

from .. import _checks, ops
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

    def unpack_many(self, W):
        """:meth:`unpack` for ``K`` parameter vectors at once, ``W`` ``(K, P)`` (C order):
        ``[(W_1, b_1), ...]`` as views with ``W_k`` ``(K, fan_in, fan_out)`` and ``b_k``
        ``(K, fan_out)`` (those shapes; the groups ``w_k`` of Eq. 1 per start); start ``j``'s
        ``W_k[j]`` is ``unpack(W[j])[k][0]``."""
        K = W.shape[0]
        return [
            (W[:, a:b].reshape(K, fi, fo), W[:, b:c])
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
        from ..logistic import sigmoid

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

    def forward_grad(self, w, X, y, out):
        """The forward pass on ``X`` ``(n, d)``, the logistic unit's ``residual`` and
        ``curv`` ``(n,)`` for ``y`` ``(n,)`` (:func:`hvpoison.ops.sigmoid_ce`) and line 1
        seeded with the residual into ``out`` ``(P,)`` (Eq. 6's ``g`` less the penalty);
        returns ``(tape, bwd, residual, curv)``. Here the three steps in turn; a model may
        fuse them (LR: one read of ``X``)."""
        xp = get_array_module(w)
        tape = self.forward(w, X)
        _, residual, curv = ops.impl("sigmoid_ce", xp)(xp, tape.z, y, with_loss=False)
        return tape, self.backward(w, tape, residual, out), residual, curv

    def forward_grad_many(self, W, X, y, out):
        """:meth:`forward_grad` for ``K`` independent parameter vectors ``W`` ``(K, P)`` on
        the same ``X`` ``(n, d)``, ``y`` ``(n,)``: line 1 seeded with each start's residual
        into ``out[j]`` (``out`` ``(K, P)``: row ``j`` is Eq. 6's ``g`` of start ``j`` less
        the penalty); returns the logits ``(K, n)``. Here one :meth:`forward_grad` per start
        (the fallback every model has; LR uses it); the MLP overrides it with one blocked
        computation that reads ``X`` once for all ``K`` (:meth:`MLP.forward_grad_many
        <hvpoison.models.mlp.MLP.forward_grad_many>`)."""
        xp = get_array_module(W)
        z = xp.empty((W.shape[0], X.shape[0]), dtype=W.dtype)
        for j in range(W.shape[0]):
            z[j] = self.forward_grad(W[j], X, y, out[j])[0].z
        return z

    def hvp_fresh(self, w, X, y, V, out_g, out_hv):
        """The model part of ``H V`` (Eq. 4) at a fresh point into ``out_hv`` (``(P,)`` or
        ``(P, m)``, as ``V``) and, unless ``out_g`` is None, of the gradient into ``out_g``
        ``(P,)``, for ``X`` ``(n, d)``, ``y`` ``(n,)``: :meth:`forward_r`, the loss's
        residual and curvature, :meth:`backward_r`. A model may fuse them further (LR, one
        direction: one read of ``X``)."""
        xp = get_array_module(w)
        tape, rtape = self.forward_r(w, X, V)
        _, residual, curv = ops.impl("sigmoid_ce", xp)(xp, tape.z, y, with_loss=False)
        self.backward_r(w, tape, residual, rtape, curv, out_g, out_hv)

    def rop(self, w, tape, bwd, v, curv, out):
        """R-operator (lines 2-3): ``R_v{grad_w}`` into ``out`` ``(P,)`` for ``v`` ``(P,)``
        with ``R_v{dz} = curv * R_v{z}``, ``curv`` ``(n,)``; the model part of ``H v``
        (Eq. 4, Alg. 1 [R3]). Equals ``rbackward(w, tape, bwd, rforward(w, tape, v), curv,
        out)``."""
        raise NotImplementedError

    def rforward(self, w, tape, V):
        """R-forward (line 2) for ``V`` ``(P,)`` or ``(P, m)`` on a kept tape; returns
        ``rtape`` with ``rtape.Rz`` ``(n,)`` or ``(n, m)``."""
        raise NotImplementedError

    def rbackward(self, w, tape, bwd, rtape, curv, out):
        """R-backward (line 3): ``R_V{grad_w}`` into ``out`` ``(P,)`` or ``(P, m)`` (as
        ``rtape``) for ``curv`` ``(n,)`` and the deltas ``bwd``; returns ``rbwd``."""
        raise NotImplementedError

    def forward_r(self, w, X, V):
        """``(forward(w, X), rforward(w, tape, V))`` with one read of ``X`` ``(n, d)``;
        ``V`` ``(P,)`` or ``(P, m)``."""
        raise NotImplementedError

    def backward_r(self, w, tape, dz, rtape, curv, out_g, out_hv):
        """Lines 1 and 3 with one read of ``X``: the gradient for the seed ``dz`` ``(n,)``
        into ``out_g`` ``(P,)`` (None: skip it) and ``R_V{grad_w}`` into ``out_hv``;
        returns ``(bwd, rbwd)``."""
        raise NotImplementedError

    blocked_rop = False     # True: rop_block computes k directions in one pass

    def rop_block(self, w, tape, curv, V, out, bwd=None):
        """Lines 2-3 for ``V`` ``(P, k)`` at once into ``out`` ``(P, k)``: the model part of
        ``H V`` (Eq. 4), for models with ``blocked_rop``; ``bwd`` the deltas of
        ``backward(w, tape, residual, None)`` (required where line 3 uses them)."""
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
