"""The training objective ``L(w; D, lam) = l(w; D) + sum_k exp(lam_k) Omega(w_k)`` (Eq. 1).

An :class:`Objective` couples a model with a penalty.  Its methods are pure functions of
``(w, X, y, lam[, v])``. Two values serve the loops that call it many times:

- :meth:`Objective.prepare` checks ``(X, y, lam)`` once and returns :class:`Prepared` data
  (``lam`` in its one internal form: ``exp(lam)`` per penalty group);
- :meth:`Objective.linearize` returns the :class:`Point` at ``w`` on prepared data: it runs
  the forward pass once and hands out the gradient, ``H v`` and the mixed products from it
  (Alg. 1 keeps one per step), with its own copy of ``w``, so it stays valid.

:meth:`Objective.at` does both, checked, in one call.

Shapes: ``w, v``: ``(P,)``; ``X``: ``(n, d)``; ``y``: ``(n,)`` in {0, 1};
``lam``: ``None`` (no penalty), a scalar, or ``(n_lam,)`` with ``n_lam`` the number of
layers when ``per_layer`` and 1 otherwise.
"""
from __future__ import annotations

import numpy as np

from . import _checks, ops
from .backend import get_array_module, to_numpy
from .logistic import mean_ce
from .models.base import Model
from .penalties import Penalty


def _float_dtype(name, X):
    """``X``'s dtype when it is float32/float64 (the dtype every array of Eq. 1 shares)."""
    dtype = getattr(X, "dtype", None)
    if dtype not in (np.float32, np.float64):
        _checks.fail(name, "a float32 or float64 array", _checks.describe(X), TypeError)
    return dtype


class Prepared:
    """The data of Eq. 1 checked once: ``D = (X (n, d), y (n,))`` and ``lam`` in its one
    internal form, ``e = exp(lam)`` per penalty group ``(G,)`` with ``lam_shape``, the shape
    a derivative in ``lam`` comes back in (``()`` for a scalar, ``(n_lam,)``; None without a
    penalty). Built by :meth:`Objective.prepare` (no forward pass); accepted wherever
    ``X, y, lam`` are (:func:`~hvpoison.hypergrad.rmd`, :func:`~hvpoison.hypergrad.fmd`,
    :func:`~hvpoison.hypergrad.unroll`, :func:`~hvpoison.hypergrad.implicit_hypergrad`,
    :func:`~hvpoison.train`, the victims), so a loop checks its data once.

    It holds ``X`` by reference, not a copy: write into ``X`` only when no point built on
    it is still in use. ``lam`` is the value as given (for messages).
    """

    __slots__ = ("X", "y", "lam", "e", "lam_shape", "xp", "dtype")

    def __init__(self, X, y, lam, e, lam_shape):
        self.X, self.y, self.lam, self.e, self.lam_shape = X, y, lam, e, lam_shape
        self.xp, self.dtype = get_array_module(X), X.dtype

    def __repr__(self):
        return (f"Prepared(X of shape {tuple(self.X.shape)} and dtype {self.dtype}, "
                f"lam={self.lam_text()})")

    def lam_text(self):
        """``lam`` for a message: ``None``, a float, or a list of floats (a device value is
        read back here, and only here)."""
        if self.lam is None or isinstance(self.lam, (int, float)):
            return repr(self.lam)
        return repr(to_numpy(self.lam).tolist())

    def with_data(self, X, y):
        """The same ``lam`` over ``X`` ``(n', d)``, ``y`` ``(n',)`` (in this dtype): the
        attack's poisoned copies of checked data; only shapes and dtypes are checked."""
        if X.ndim != 2 or X.shape[1] != self.X.shape[1] or X.dtype != self.dtype:
            _checks.fail("X", f"shape (n, {self.X.shape[1]}) and dtype {self.dtype}",
                         _checks.describe(X))
        if y.shape != (X.shape[0],) or y.dtype != self.dtype:
            _checks.fail("y", f"shape ({X.shape[0]},) and dtype {self.dtype}",
                         _checks.describe(y))
        return Prepared(X, y, self.lam, self.e, self.lam_shape)

    def with_exp_lam(self, e, lam=None):
        """The same data with ``e = exp(lam)`` per penalty group (``(G,)``, on this
        device, from :meth:`Objective.exp_groups`): Alg. 2's ``lam_k`` at every
        hyperiteration, with no wait for the device."""
        if (e is None) != (self.e is None) or (e is not None and e.shape != self.e.shape):
            _checks.fail("e", "exp(lam) per penalty group, shaped like the prepared lam's",
                         _checks.describe(e) if e is not None else "None")
        return Prepared(self.X, self.y, lam, e, self.lam_shape)


class Point:
    """Eq. 1's ``L`` linearised at ``w`` ``(P,)`` on :class:`Prepared` data: one forward
    pass, reused by every product of Eq. 4 and Alg. 1 (the gradient, ``H v``, the mixed
    products).

    A point is a value: it keeps its own copy of ``w``, and what it derives from its one
    forward tape (the backward deltas) depends on nothing a caller can change, so a point
    kept from step ``t`` of Alg. 1 still gives step ``t``'s products after ``w`` has moved
    on. (The data are held by reference: see :class:`Prepared`.) Build it with
    :meth:`Objective.linearize` (or :meth:`Objective.at`, which also checks ``X, y,
    lam``); ``grad_out`` ``(P,)``: the gradient is written into it with the forward pass
    (:meth:`Model.forward_grad <hvpoison.models.base.Model.forward_grad>`).
    """

    def __init__(self, obj, w, data, grad_out=None):
        self.obj, self.data = obj, data
        self.w = w.copy()                # its own: the caller's w may be updated in place
        self.X, self.y, self.e, self.lam_shape = data.X, data.y, data.e, data.lam_shape
        xp = self.xp = data.xp
        if grad_out is not None:         # the forward pass and the gradient together
            self.tape, self._bwd, self.residual, self.curv = obj.model.forward_grad(
                self.w, self.X, self.y, grad_out)
            self._ce = None
            self._add_penalty_grad(grad_out)
            return
        self.tape = obj.model.forward(self.w, self.X)
        # residual dl/dz and curvature d2l/dz2 (the GPU kernel adds the loss in the same pass)
        self._ce, self.residual, self.curv = ops.impl("sigmoid_ce", xp)(xp, self.tape.z,
                                                                        self.y, with_loss=False)
        self._bwd = None                 # the backward deltas, formed once when first needed

    # -- values and first order -------------------------------------------------------
    def loss(self):
        """``L(w; D, lam)`` of Eq. 1, a scalar."""
        value = mean_ce(self.xp, self.tape.z, self.y) if self._ce is None else self._ce
        if self.e is not None:
            value = value + self.obj.penalty.value(self.xp, self.w, self.e)
        return value

    def grad(self, out=None):
        """``grad_w L`` of Eq. 1, shape ``(P,)``: a new array, or written into ``out``."""
        out = self.xp.empty_like(self.w) if out is None else out
        bwd = self.obj.model.backward(self.w, self.tape, self.residual, out)
        if self._bwd is None:
            self._bwd = bwd
        return self._add_penalty_grad(out)

    def _add_penalty_grad(self, out):
        if self.e is not None:
            self.obj.penalty.add_grad(self.xp, self.w, self.e, out)
        return out

    def _backward(self):
        # the R pass needs the backward state, not the gradient: without it, form the
        # deltas alone (for a lone H v this skips the X^T delta_1 pass over the data)
        if self._bwd is None:
            self._bwd = self.obj.model.backward(self.w, self.tape, self.residual, None)
        return self._bwd

    # -- second order -----------------------------------------------------------------
    def hvp(self, v, out=None):
        """``H v = grad_w^2 L v`` (Eq. 4, Alg. 1 [R3]) by the R-operator (one R-forward and
        one R-backward) for ``v`` ``(P,)``; shape ``(P,)``."""
        return self.hvp_mixed(v, rows=None, out=out, with_x=False)[0]

    def hvp_block(self, V):
        """``H V`` ``(P, k)`` (Eq. 4's ``H``) for ``k`` directions ``V`` ``(P, k)`` in one
        blocked R pass (GEMMs of width ``k h_1`` with ``X`` instead of ``k`` passes; LR and
        the MLP), else ``k`` single products. The dense Hessian of
        :class:`hvpoison.victims.Newton`, Lanczos in :mod:`hvpoison.stepsize`, and FMD's
        ``H Z`` use it."""
        xp, model = self.xp, self.obj.model
        out = xp.empty(V.shape, dtype=V.dtype)
        if model.blocked_rop:
            model.rop_block(self.w, self.tape, self.curv, V, out, bwd=self._backward())
            if self.e is not None:
                self.obj.penalty.add_hvp(xp, self.w, self.e, V, out)
            return out
        for j in range(V.shape[1]):
            out[:, j] = self.hvp(xp.ascontiguousarray(V[:, j]))
        return out

    def hessian_factor(self):
        """``(U, c)`` with ``H = U U^T + diag(c)`` (Eq. 4; ``U`` ``(P, n)`` the model's
        Gram factor, ``c`` ``(P,)`` the penalty's diagonal Hessian: ``e^lam`` on penalised
        weights for L2, zero for L1 and on the bias), or None for models without one."""
        xp, model = self.xp, self.obj.model
        if not model.low_rank_hessian:
            return None
        c = xp.zeros_like(self.w)
        if self.e is not None:
            self.obj.penalty.add_hvp(xp, self.w, self.e, xp.ones_like(self.w), c)
        return model.hessian_factor(self.w, self.tape, self.curv), c

    def hvp_mixed(self, v, rows=None, out=None, with_x=True):
        """``(H v, M_X^T v, M_lam^T v)`` from one R pass.

        ``M_X^T v = grad_X (v^T grad_w L)`` restricted to ``rows`` (``len(rows) x d``, all
        rows when ``None``) and ``M_lam^T v = grad_lam (v^T grad_w L)`` in the shape of
        ``lam`` (``None`` without a penalty).  These are the three products of Alg. 1's
        reverse step.
        """
        xp, model = self.xp, self.obj.model
        out = xp.empty_like(self.w) if out is None else out
        bwd = self._backward()
        rbwd = model.rop(self.w, self.tape, bwd, v, self.curv, out)
        mx = model.mixed_x(self.w, bwd, rbwd, v, rows) if with_x else None
        ml = None
        if self.e is not None:
            self.obj.penalty.add_hvp(xp, self.w, self.e, v, out)
            ml = self.hvp_lw(v)
        return out, mx, ml

    def hvp_xw(self, v, rows=None):
        """``M_X^T v = grad_X (v^T grad_w L)`` (Eq. 4, Alg. 1 [R1]), shape ``(n, d)`` or
        ``(len(rows), d)``."""
        return self.hvp_mixed(v, rows=rows)[1]

    def hvp_lw(self, v):
        """``M_lam^T v = grad_lam (v^T grad_w L)`` (Eq. 4, Alg. 1 [R2]) in the shape of
        ``lam``; ``None`` without a penalty."""
        if self.e is None:
            return None
        return self.obj.reduce_lam(
            self.obj.penalty.mixed_lam(self.xp, self.w, self.e, v), self.lam_shape)


class Objective:
    """Training objective of Eq. 1 = model + optional L2/L1 penalty with log-scale strength
    ``lam`` (scalar, or ``(n_lam,)`` one per layer); ``w`` is ``(P,)``, ``X`` ``(n, d)``.

    Parameters
    ----------
    model : LR or MLP
    penalty : None, "l2" or "l1"
    per_layer : bool
        One ``lam`` per layer (``n_lam = model.n_layers``) instead of one shared scalar.
    """

    def __init__(self, model, penalty=None, per_layer=False):
        if not isinstance(model, Model):
            _checks.fail("model", "an hvpoison model (LR or MLP)", type(model).__name__,
                         TypeError)
        if not isinstance(per_layer, bool):
            _checks.fail("per_layer", "True or False", repr(per_layer), TypeError)
        self.model = model
        self.per_layer = per_layer
        self.penalty = None if penalty is None else \
            Penalty(penalty, model.weight_slices, model.n_params)
        self.n_lam = model.n_layers if per_layer else 1

    def __repr__(self):
        kind = None if self.penalty is None else self.penalty.kind
        return f"Objective({self.model!r}, penalty={kind!r}, per_layer={self.per_layer})"

    # -- lam bookkeeping --------------------------------------------------------------
    def _lam(self, lam, xp, dtype):
        """``(e, shape)``: ``exp(lam)`` per penalty group, and ``lam``'s shape (or Nones)."""
        if self.penalty is None:
            if lam is not None:
                _checks.fail("lam", "None (this objective has no penalty)", repr(lam))
            return None, None
        if lam is None:
            return None, None
        vec, shape = _checks.lam("lam", lam, self.n_lam, xp, dtype)
        return self.exp_groups(vec), shape

    def exp_groups(self, vec):
        """``e = exp(lam)`` of Eq. 1 per penalty group, shape ``(n_groups,)``, from ``vec``
        ``(n_lam,)`` (unchecked; :meth:`Penalty.exp_lam <hvpoison.penalties.Penalty.exp_lam>`)."""
        return self.penalty.exp_lam(vec)

    def reduce_lam(self, per_group, shape):
        """Per-group derivatives ``d/d lam_k`` (Eq. 4's ``M_lam^T v``, ``(n_groups,)``) back
        to ``lam``'s ``shape`` (:meth:`Penalty.reduce_lam
        <hvpoison.penalties.Penalty.reduce_lam>`)."""
        return self.penalty.reduce_lam(per_group, shape)

    # -- checked entry points ---------------------------------------------------------
    def prepare(self, X, y, lam=None, names=("X", "y"), dtype=None):
        """Check ``X`` ``(n, d)`` (finite, of ``dtype``: float32/float64, by default its
        own), ``y`` ``(n,)`` in {0, 1} and ``lam`` once (errors name ``names`` and ``lam``),
        with no forward pass; returns the :class:`Prepared` data of Eq. 1 (``y`` in ``X``'s
        dtype, ``e = exp(lam)`` per penalty group)."""
        _checks.features(names[0], X, self.model.n_features,
                         _float_dtype(names[0], X) if dtype is None else dtype)
        y = _checks.labels(names[1], y, X.shape[0], X.dtype)
        e, shape = self._lam(lam, get_array_module(X), X.dtype)
        return Prepared(X, y, lam, e, shape)

    def as_prepared(self, X, y=None, lam=None, names=("X", "y"), dtype=None):
        """``X`` when it is :class:`Prepared` (then ``y`` and ``lam`` must be None: it holds
        them), else :meth:`prepare` of ``(X (n, d), y (n,), lam)``: how every public entry
        point takes the data of Eq. 1."""
        if not isinstance(X, Prepared):
            return self.prepare(X, y, lam, names, dtype)
        for name, value in ((names[1], y), ("lam", lam)):
            if value is not None:
                _checks.fail(name, f"None when {names[0]} is Prepared data (it holds {name})",
                             _checks.describe(value))
        if X.X.shape[1] != self.model.n_features or (X.e is not None and self.penalty is None):
            _checks.fail(names[0], f"data prepared for this objective ({self!r})", repr(X))
        return X

    def linearize(self, w, data, grad_out=None):
        """The :class:`Point` of Eq. 1 at ``w`` ``(P,)`` on :class:`Prepared` ``data``: one
        forward pass; checks only ``w``'s shape and dtype (``O(1)``), so Alg. 1's steps
        call it on data checked once (a diverging ``w`` is reported by the loop). With
        ``grad_out`` ``(P,)``, ``grad_w L`` is written into it in the same pass (Alg. 1's
        [F]: for LR one read of ``X`` instead of two; :meth:`Point.grad` gives the same
        numbers to rounding)."""
        if getattr(w, "shape", None) != (self.model.n_params,) or w.dtype != data.dtype:
            _checks.fail("w", f"shape ({self.model.n_params},) and dtype {data.dtype} (the "
                         "data's)", _checks.describe(w))
        if grad_out is not None and (getattr(grad_out, "shape", None) != w.shape or
                                     grad_out.dtype != w.dtype):
            _checks.fail("grad_out", f"an array of shape {w.shape} and dtype {w.dtype} (w's)",
                         _checks.describe(grad_out))
        return Point(self, w, data, grad_out)

    def grad_many(self, W, data, out=None):
        """``grad_w L`` of Eq. 1 (Eq. 6's ``g``) at ``K`` parameter vectors, the rows of
        ``W`` ``(K, P)``, on :class:`Prepared` ``data``: ``(K, P)``, a new array or written
        into ``out``; row ``j`` is ``linearize(W[j], data).grad()`` to rounding. The model
        part comes from :meth:`Model.forward_grad_many
        <hvpoison.models.base.Model.forward_grad_many>` (the MLP: one blocked pass, ``X``
        read once for all ``K``; other models one start at a time), the penalty's is added
        per start (``P`` numbers each). Checks only ``W``'s shape and dtype (``O(1)``), as
        :meth:`linearize`: the gradient-descent loop of :func:`~hvpoison.hypergrad.rmd.
        unroll_many` calls it on data checked once."""
        if getattr(W, "ndim", None) != 2 or W.shape[1] != self.model.n_params or \
                W.dtype != data.dtype:
            _checks.fail("W", f"shape (K, {self.model.n_params}) and dtype {data.dtype} (the "
                         "data's)", _checks.describe(W))
        out = data.xp.empty_like(W) if out is None else out
        self.model.forward_grad_many(W, data.X, data.y, out)
        if data.e is not None:
            for j in range(W.shape[0]):
                self.penalty.add_grad(data.xp, W[j], data.e, out[j])
        return out

    def at(self, w, X, y=None, lam=None):
        """Check ``w`` ``(P,)`` (finite) and the data once and return the :class:`Point`
        (Eq. 1 at ``w`` on ``X`` ``(n, d)``, ``y`` ``(n,)``, or on :class:`Prepared` ``X``)
        sharing one forward pass."""
        _checks.params("w", w, self.model.n_params)
        return self.linearize(w, self.as_prepared(X, y, lam, dtype=w.dtype))

    def loss(self, w, X, y, lam=None):
        """``L(w; D, lam)`` (Eq. 1), a scalar."""
        return self.at(w, X, y, lam).loss()

    def grad(self, w, X, y, lam=None):
        """``grad_w L`` of Eq. 1 (``g`` of Eq. 6), shape ``(P,)``."""
        return self.at(w, X, y, lam).grad()

    def hvp(self, w, X, y, lam, v):
        """``H v`` with ``H = grad_w^2 L`` (Eq. 4, Alg. 1 [R3]; R-operator, no dense
        Hessian) for ``v`` ``(P,)``, shape ``(P,)``, at a fresh point (:meth:`hvp_fresh`)."""
        _checks.params("w", w, self.model.n_params)
        data = self.as_prepared(X, y, lam, dtype=w.dtype)
        return self.hvp_fresh(w, data, _checks.vector_like("v", v, w))

    def hvp_fresh(self, w, data, V, with_grad=False):
        """``H V`` (Eq. 4) at a point no tape is kept for, on :class:`Prepared` ``data``,
        ``V`` ``(P,)`` or ``(P, k)``, with the forward and R-forward products with ``X``
        fused (``X [W_1 V_1]``, one read) and the backward ones too (``X^T [delta_1 R
        delta_1]``): two reads of ``X`` instead of three, or, ``with_grad``, ``(grad_w L,
        H V)`` in two reads instead of four (:meth:`Model.hvp_fresh
        <hvpoison.models.base.Model.hvp_fresh>`; LR, one direction, with numba: one read).
        Unchecked ``w`` and ``V``: see :meth:`at`."""
        xp, penalty = data.xp, self.penalty
        g = xp.empty_like(w) if with_grad else None
        out = xp.empty(V.shape, dtype=V.dtype)
        self.model.hvp_fresh(w, data.X, data.y, V, g, out)
        if data.e is not None:
            penalty.add_hvp(xp, w, data.e, V, out)
            if with_grad:
                penalty.add_grad(xp, w, data.e, g)
        return (g, out) if with_grad else out

    def hvp_xw(self, w, X, y, lam, v, rows=None):
        """``M_X^T v = grad_X (v^T grad_w L)`` (Eq. 4, Alg. 1 [R1]) for ``v`` ``(P,)``,
        shape ``(n, d)``; ``(len(rows), d)`` with ``rows``."""
        point = self.at(w, X, y, lam)
        rows = _checks.rows("rows", rows, X.shape[0], point.xp)
        return point.hvp_xw(_checks.vector_like("v", v, w), rows)

    def hvp_lw(self, w, X, y, lam, v):
        """``M_lam^T v = grad_lam (v^T grad_w L)`` (Eq. 4, Alg. 1 [R2]) for ``v`` ``(P,)``,
        in the shape of ``lam``; ``None`` when ``lam`` is None."""
        return self.at(w, X, y, lam).hvp_lw(_checks.vector_like("v", v, w))

    def val_loss(self, w, X, y=None):
        """Plain mean cross-entropy ``l(w; D)`` with no penalty (the outer loss of Eq. 1
        and Eq. 3) for ``X`` ``(m, d)``, ``y`` ``(m,)`` (or :class:`Prepared` ``X`` without
        ``lam``); a scalar."""
        _checks.params("w", w, self.model.n_params)
        data = self.as_prepared(X, y, dtype=w.dtype)
        return mean_ce(get_array_module(w), self.model.forward(w, data.X).z, data.y)
