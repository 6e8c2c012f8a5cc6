"""The training objective ``L(w; D, lam) = l(w; D) + sum_k exp(lam_k) Omega(w_k)`` (Eq. 1).

An :class:`Objective` couples a model with a penalty.  Its methods are pure functions of
``(w, X, y, lam[, v])``; :meth:`Objective.at` returns a :class:`Point` that runs the forward
pass once and hands out the gradient, ``H v`` and the mixed products from it (the
hypergradient loops call these at every step).

Shapes: ``w, v``: ``(P,)``; ``X``: ``(n, d)``; ``y``: ``(n,)`` in {0, 1};
``lam``: ``None`` (no penalty), a scalar, or ``(n_lam,)`` with ``n_lam`` the number of
layers when ``per_layer`` and 1 otherwise.
"""
from __future__ import annotations

from . import _checks, ops
from .backend import get_array_module
from .models._logistic import mean_ce
from .models.base import Model
from .penalties import Penalty


class Point:
    """``L`` of Eq. 1 at one ``(w (P,), X (n, d), y (n,), lam)``: one forward pass, reused
    by every product of Eq. 4 and Alg. 1.

    Do not build directly; use :meth:`Objective.at` (checked) or ``Objective.point``
    (unchecked, for inner loops whose inputs were validated once).
    """

    def __init__(self, obj, w, X, y, e, lam_shape):
        self.obj, self.w, self.X, self.y = obj, w, X, y
        self.e, self.lam_shape = e, lam_shape
        xp = self.xp = get_array_module(w)
        self.tape = obj.model.forward(w, X)
        # residual dl/dz and curvature d2l/dz2 (the GPU kernel adds the loss in the same pass)
        self._ce, self.residual, self.curv = ops.impl("sigmoid_ce", xp)(xp, self.tape.z, y,
                                                                        with_loss=False)
        self._bwd = None
        self._g = None

    # -- values and first order -------------------------------------------------------
    def loss(self):
        """``L(w; D, lam)`` of Eq. 1, a scalar."""
        value = mean_ce(self.xp, self.tape.z, self.y) if self._ce is None else self._ce
        if self.e is not None:
            value = value + self.obj.penalty.value(self.xp, self.w, self.e)
        return value

    def grad(self, out=None):
        """``grad_w L`` of Eq. 1, shape ``(P,)``, written into ``out`` when given."""
        if self._g is not None and out is None:
            return self._g
        xp = self.xp
        keep = out is None               # a caller's buffer may be reused: cache only ours
        out = xp.empty_like(self.w) if out is None else out
        self._bwd = self.obj.model.backward(self.w, self.tape, self.residual, out)
        if self.e is not None:
            self.obj.penalty.add_grad(xp, self.w, self.e, out)
        if keep:
            self._g = out
        return out

    def _backward(self):
        # the R pass needs the backward state, not the gradient: without a cached one, form
        # the deltas alone (for a lone H v this skips the X^T delta_1 pass over the data)
        if self._bwd is None:
            self._bwd = self.obj.model.backward(self.w, self.tape, self.residual, None)
        return self._bwd

    # -- second order -----------------------------------------------------------------
    def hvp(self, v, out=None):
        """``H v = grad_w^2 L v`` (Eq. 4, Alg. 1 [R3]) by the R-operator (one R-forward and
        one R-backward) for ``v`` ``(P,)``; shape ``(P,)``."""
        return self.hvp_mixed(v, rows=None, out=out, with_x=False)[0]

    def hvp_block(self, V):
        """``H V`` ``(P, k)`` (Eq. 4's ``H``) for ``k`` directions ``V`` ``(P, k)``: one
        blocked R pass (two GEMMs with ``X``) where the model has one (LR), else ``k``
        single products (the dense Hessian of :class:`hvpoison.victims.Newton`)."""
        xp, model = self.xp, self.obj.model
        out = xp.empty_like(V)
        if model.blocked_rop:
            model.rop_block(self.w, self.tape, self.curv, V, out)
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
        self.penalty = None if penalty is None else Penalty(penalty, model.weight_slices)
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
        """``e = exp(lam)`` of Eq. 1 per penalty group from the ``(n_lam,)``
        array ``vec`` (unchecked; a shared ``lam`` is repeated over the layers), of shape
        ``(n_groups,)``."""
        xp = get_array_module(vec)
        if self.n_lam == 1 and self.model.n_layers > 1:
            vec = xp.repeat(vec, self.model.n_layers)
        return xp.exp(vec)

    def reduce_lam(self, per_group, shape):
        """Per-group derivatives ``d/d lam_k`` (Eq. 4's ``M_lam^T v``, ``(n_groups,)``) back
        to ``lam``'s ``shape`` (a shared scalar sums its groups)."""
        if shape == ():
            return per_group.sum()
        if shape == (1,):
            return per_group.sum(keepdims=True)
        return per_group

    # -- checked entry points ---------------------------------------------------------
    def check_data(self, w, X, y, names=("X", "y")):
        """Check ``w`` ``(P,)``, ``X`` ``(n, d)`` and ``y`` ``(n,)`` for Eq. 1 (errors name
        ``names``); returns ``y`` in ``w``'s dtype."""
        _checks.params("w", w, self.model.n_params)
        _checks.features(names[0], X, self.model.n_features, w.dtype)
        return _checks.labels(names[1], y, X.shape[0], w.dtype)

    def at(self, w, X, y, lam=None):
        """Validate once and return the :class:`Point` (Eq. 1 at ``w`` ``(P,)``, ``X``
        ``(n, d)``, ``y`` ``(n,)``) sharing one forward pass."""
        y = self.check_data(w, X, y)
        e, shape = self._lam(lam, get_array_module(w), w.dtype)
        return Point(self, w, X, y, e, shape)

    def point(self, w, X, y, e, shape):
        """Unchecked :class:`Point` of Eq. 1 for inner loops whose inputs were checked once
        (``w`` ``(P,)``, ``X`` ``(n, d)``, ``y`` ``(n,)`` already in ``w``'s dtype, ``e =
        exp(lam)`` per group, ``shape`` of ``lam``)."""
        return Point(self, w, X, y, e, shape)

    def loss(self, w, X, y, lam=None):
        """``L(w; D, lam)`` (Eq. 1), a scalar."""
        return self.at(w, X, y, lam).loss()

    def grad(self, w, X, y, lam=None):
        """``grad_w L`` of Eq. 1 (``g`` of Eq. 6), shape ``(P,)``."""
        return self.at(w, X, y, lam).grad()

    def hvp(self, w, X, y, lam, v):
        """``H v`` with ``H = grad_w^2 L`` (Eq. 4, Alg. 1 [R3]; R-operator, no dense
        Hessian) for ``v`` ``(P,)``, shape ``(P,)``."""
        return self.at(w, X, y, lam).hvp(_checks.vector_like("v", v, w))

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

    def val_loss(self, w, X, y):
        """Plain mean cross-entropy ``l(w; D)`` with no penalty (the outer loss of Eq. 1
        and Eq. 3) for ``X`` ``(m, d)``, ``y`` ``(m,)``; a scalar."""
        y = self.check_data(w, X, y)
        return mean_ce(get_array_module(w), self.model.forward(w, X).z, y)
