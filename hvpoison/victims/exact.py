"""The Exact victim: trained to optimality, ``w* = argmin_w L(w; D, lam)`` (Eq. 1), and the
hypergradient matched to it, Eq. 4 at ``w*`` over one linear solve.

==============================  ============================================================
``Exact(tol, maxiter)``         :meth:`Exact.fit`: Newton's method (:class:`~.newton.Newton`,
                                warm-started, preconditioned CG); for strictly convex,
                                twice-differentiable objectives only (LR with L2), else a
                                clear error
``Implicit(damping, ...)``      :meth:`Exact.hypergradient`: Eq. 4
                                (:func:`hvpoison.hypergrad.implicit.eq4`) at the victim's
                                ``w*``, solving ``(H + mu_b I) u = grad l_val`` with the
                                victim's Newton solver, ``mu_b = damping + damping_per_batch
                                * b``: the damping filters the near-null curvature
                                directions (eigenvalues near ``e^lam``) in which ``H^{-1}``
                                makes the poison memorise the validation rows it was cloned
                                from
==============================  ============================================================
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import _checks
from ..backend import get_array_module
from ..hypergrad.implicit import eq4
from ..models.lr import LR
from .newton import Newton


@dataclass(frozen=True)
class Exact:
    """Trained to optimality: ``w* = argmin_w L(w; D, lam)`` of Eq. 1 with ``|grad L| <=
    tol``; :meth:`fit` returns ``w*`` of shape ``(P,)``.

    Newton's method with a backtracking line search (:class:`Newton`), from ``w0`` or zeros.
    Needs a strictly convex, twice-differentiable ``L``: logistic regression with an L2
    penalty (the optimum of an unpenalised LR need not exist; L1 has no Hessian).
    """

    tol: float = 1e-9
    maxiter: int = 100
    name = "exact"
    methods = ("strong", "flip")            # no gradient steps for alg2 to differentiate

    def __post_init__(self):
        _checks.positive_float("victim.tol", self.tol)
        _checks.positive_int("victim.maxiter", self.maxiter)

    @staticmethod
    def unsupported(obj):
        """Why ``obj`` cannot be trained to optimality by Newton, or None if it can."""
        if not isinstance(obj.model, LR):
            return (f"a convex objective (LR with an L2 penalty); {obj.model!r} is not "
                    "convex: use GD(T, eta) for the MLP")
        if obj.penalty is None or obj.penalty.kind != "l2":
            kind = None if obj.penalty is None else obj.penalty.kind
            return (f"LR with an L2 penalty (a unique, smooth optimum), got penalty {kind!r}: "
                    "use GD(T, eta)")
        return None

    def check(self, obj):
        """Raise ``ValueError`` naming ``victim`` when ``obj`` is not supported."""
        reason = self.unsupported(obj)
        if reason is not None:
            _checks.fail("victim", f"Exact() needs {reason}", "Exact()")

    def trainable(self, obj, X, y, bounds):
        """``bounds`` unchanged: Newton trains every ``lam`` of an L2-penalised LR."""
        return bounds

    def resolved(self, obj, data, lam_bounds=None):
        """This victim (it has no step size to resolve)."""
        return self

    def describe(self):
        """What a batch's trace records of this victim (nothing: it has no settings that
        the data resolve)."""
        return {}

    def hypergradient(self, memory="store", **options):
        """The hypergradient matched to this training: :class:`Implicit`, Eq. 4 at the
        optimum, with ``options`` (its fields; ``memory`` is Alg. 1's and unused here)."""
        return Implicit(**options)

    @staticmethod
    def init_kind(obj):
        """``"zeros"``: Newton's start (the optimum does not depend on it)."""
        return "zeros"

    def initial(self, obj, seed, like):
        """``w_0 = 0`` ``(P,)`` on ``like``'s device and dtype."""
        return get_array_module(like).zeros(obj.model.n_params, dtype=like.dtype)

    def solver(self):
        """A fresh :class:`Newton` (keep it to warm-start later solves)."""
        return Newton(self.tol, self.maxiter)

    def fit(self, obj, X, y=None, lam=None, *, seed=0, w0=None, solver=None):
        """``w*`` ``(P,)`` for ``X`` ``(n, d)``, ``y`` ``(n,)`` (``seed`` is unused: the
        optimum does not depend on the start); ``solver`` keeps a factor between calls."""
        self.check(obj)
        data = obj.as_prepared(X, y, lam)                            # validates once
        if data.e is None:
            _checks.fail("lam", "a value (Exact() trains an L2-penalised LR)", "None")
        w0 = data.xp.zeros(obj.model.n_params, dtype=data.dtype) if w0 is None else w0
        _checks.params("w0", w0, obj.model.n_params)
        solver = self.solver() if solver is None else solver
        w, _ = solver.minimize(lambda w: obj.linearize(w, data), w0)
        return w


@dataclass(frozen=True)
class Implicit:
    """Eq. 4 at the Exact victim's optimum, damped by ``mu_b = damping + damping_per_batch b``;
    the attack's inner fits stop at ``|grad L| <= train_tol``."""

    damping: float = 0.0
    damping_per_batch: float = 0.0
    train_tol: float = 1e-6

    def __post_init__(self):
        _checks.positive_float("train_tol", self.train_tol)
        _checks.nonnegative_float("damping", self.damping)
        _checks.nonnegative_float("damping_per_batch", self.damping_per_batch)

    def check(self, victim, obj):
        if not isinstance(victim, Exact):
            _checks.fail("victim", "Exact() for an Implicit hypergradient (Eq. 4 holds at "
                         "the optimum; use RMD() against GD(T, eta))", repr(victim))
        victim.check(obj)

    def start(self, ctx):
        solver = ctx.victim.solver()
        solver.tol = self.train_tol      # |grad L| of the attack's inner fits
        return {"w": ctx.xp.zeros(ctx.obj.model.n_params, dtype=ctx.dtype), "solver": solver}

    def _fit(self, ctx, st, Xc, yc, lam_k):
        """The victim's ``w*`` on ``D_tr'``, warm-started from the last one, as a Point."""
        data = ctx.prepared(Xc, yc, lam_k)
        st["w"] = ctx.victim.fit(ctx.obj, data, w0=st["w"], solver=st["solver"])
        return ctx.obj.linearize(st["w"], data)

    def __call__(self, ctx, st, Xc, yc, lam_k, need_dlam):
        """``(value, dXp, dlam)``: Eq. 4 for the attacker's set (damped by ``mu_b``) and,
        when ``need_dlam``, the defender's exact ``dlam`` on ``D_val``."""
        pt = self._fit(ctx, st, Xc, yc, lam_k)
        out = ctx.obj.linearize(pt.w, ctx.out)          # l(w*; D_t), no penalty
        mu = self.damping + self.damping_per_batch * ctx.b
        dXp, dlam, _ = eq4(pt, out.grad(), lambda b: st["solver"].solve(pt, b, damping=mu),
                           ctx.rows)
        if need_dlam and (mu or ctx.target):            # the defender's: exact, on D_val
            val = ctx.obj.linearize(pt.w, ctx.val)
            _, dlam, _ = eq4(pt, val.grad(), lambda b: st["solver"].solve(pt, b))
        return out.loss(), dXp, dlam if need_dlam else None

    def final(self, ctx, st, Xc, yc, lam_k):
        pt = self._fit(ctx, st, Xc, yc, lam_k)
        return ctx.sign * float(ctx.obj.val_loss(pt.w, ctx.out))


__all__ = ["Exact", "Implicit"]
