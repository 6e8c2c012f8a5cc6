"""How the defender trains: part of the threat model.

A *victim* turns a (possibly poisoned) training set into parameters ``w``. The attack must
differentiate through the training the victim actually does (victim-matched
hypergradients, :mod:`hvpoison.methods`), and the evaluation must train the same way: points
tuned for an early-stopped model barely hurt a converged one, and the reverse.

============================  ==============================================================
``GD(T, eta, w_init)``        the paper's test-time training: ``T`` steps of Eq. 6,
                              ``w_{t+1} = w_t - eta grad_w L``, from ``initW`` (zeros for LR,
                              a seeded Xavier draw for the MLP)
``Exact(tol, maxiter)``       trained to optimality, ``w* = argmin_w L(w; D, lam)``, by
                              Newton's method; for strictly convex, twice-differentiable
                              objectives only (LR with L2), else a clear error
============================  ==============================================================

:func:`as_victim` turns the names ``"gd"`` / ``"exact"`` into these objects.

:class:`Newton` is Exact's solver, kept by the attack across hyperiterations: it starts from
the previous ``w*`` (warm start) and solves each Newton system (and the implicit
hypergradient's, Eq. 4) by conjugate gradients preconditioned with the Cholesky factor of a
Hessian taken at an earlier point, rebuilt only when CG needs more than ``refresh``
iterations. Near the optimum one or two Newton steps of a few CG products each suffice.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _checks
from .backend import cho_factor, cho_solve, get_array_module
from .hypergrad import dense_hessian, solve_hvp, unroll
from .hypergrad.result import warn
from .models.lr import LR
from .stepsize import AUTO, check_eta

VICTIMS = ("gd", "exact")

#: The one default victim of :func:`hvpoison.attack`, :func:`hvpoison.evaluate`,
#: :func:`hvpoison.train`, :func:`hvpoison.lam_cv` and :class:`GD`: ``T = 200`` steps of
#: ``eta = 0.1`` (README, Defaults), so that with every default the victim tested is the
#: victim the attack anticipated.
DEFAULT_T = 200
DEFAULT_ETA = 0.1


@dataclass(frozen=True)
class GD:
    """Full-batch gradient descent for ``T`` steps of size ``eta`` (Eq. 6) from ``initW``;
    :meth:`fit` returns ``w_T`` of shape ``(P,)``.

    ``w_init``: ``"zeros"`` (LR's ``initW``), ``"random"`` (a Xavier draw, the MLP's), or
    None (the model's own: zeros for LR, random for the MLP). ``eta="auto"``: ``c / L``
    from the Hessian at the ``lam`` and ``w_0`` of each fit
    (:func:`hvpoison.stepsize.resolve_eta`); :func:`hvpoison.attack` resolves it once, over
    ``lam_bounds``, for the victim it anticipates.
    """

    T: int = DEFAULT_T
    eta: float = DEFAULT_ETA
    w_init: str | None = None
    name = "gd"

    def __post_init__(self):
        _checks.positive_int("T", self.T)
        check_eta(self.eta)
        if self.w_init not in (None, "zeros", "random"):
            _checks.fail("w_init", "'zeros' or 'random' (None: the model's own)", repr(self.w_init))

    def stable_lam(self, obj, X, y, margin=0.9):
        """The largest ``lam`` at which this victim's steps stay stable on ``X`` ``(n, d)``:
        for LR with L2 the curvature is at most ``L = lambda_max(A^T A / n) / 4 + e^lam``
        (the sigmoid's slope is at most 1/4, so ``w_0 = 0`` is the worst point), and ``eta <
        2 / L`` needs ``e^lam < 2 / eta - L_data``; ``margin`` leaves room for the poisoning
        points to raise ``L_data``. ``-inf`` when even no penalty diverges; None where no
        such bound holds (the MLP: its curvature moves with ``w``; L1; no penalty) or
        needed (``eta="auto"``: the step is derived for the ``lam`` trained)."""
        from .stepsize import curvature
        from .objective import Objective

        if self.eta == AUTO or not isinstance(obj.model, LR) or obj.penalty is None or \
                obj.penalty.kind != "l2":
            return None
        xp = get_array_module(X)
        L = curvature(Objective(obj.model, None), xp.zeros(obj.model.n_params, X.dtype), X, y,
                      None)
        room = margin * 2 / self.eta - L
        return math.log(room) if room > 0 else -math.inf

    def init_kind(self, obj):
        """``"zeros"`` or ``"random"``: this victim's ``initW`` for ``obj``'s model."""
        if self.w_init is not None:
            return self.w_init
        return "zeros" if isinstance(obj.model, LR) else "random"

    def initial(self, obj, seed, like):
        """``w_0`` ``(P,)`` on ``like``'s device and dtype: zeros, or the model's seeded draw."""
        xp = get_array_module(like)
        if self.init_kind(obj) == "zeros":
            return xp.zeros(obj.model.n_params, dtype=like.dtype)
        return obj.model.init(seed, dtype=like.dtype, device="gpu" if xp is not np else None)

    def fit(self, obj, X, y=None, lam=None, *, seed=0, w0=None):
        """``w_T`` ``(P,)`` after ``T`` steps on ``X`` ``(n, d)``, ``y`` ``(n,)`` (or
        Prepared ``X``) from ``w0`` (default: :meth:`initial` with ``seed``)."""
        data = obj.as_prepared(X, y, lam)
        w0 = self.initial(obj, seed, data.X) if w0 is None else w0
        return unroll(obj, w0, data, T=self.T, eta=self.eta)


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


def as_victim(victim, T=DEFAULT_T, eta=DEFAULT_ETA, w_init=None):
    """``"gd"`` -> ``GD(T, eta, w_init)``, ``"exact"`` -> ``Exact()``; objects pass."""
    if isinstance(victim, (GD, Exact)):
        return victim
    if victim == "gd":
        return GD(T, eta, w_init)
    if victim == "exact":
        return Exact()
    _checks.fail("victim", f"one of {VICTIMS} or a GD/Exact object", repr(victim))


class Newton:
    """Newton's method for a convex ``L`` with a stale preconditioner.

    State (explicit, owned by the caller who keeps this object): the Hessian at the last
    refresh, the preconditioners ``(H + mu I)^{-1}`` formed from it, and counters.
    :meth:`solve` runs preconditioned CG on ``(H + mu I) u = b`` at a fresh
    :class:`~hvpoison.objective.Point` and takes ``H`` anew there when CG took more than
    ``refresh`` iterations; :meth:`minimize` takes Newton steps ``w -= t H^{-1} grad`` with
    Armijo backtracking until ``|grad| <= tol``.

    The stored Hessian is either dense, ``H`` ``(P, P)`` from ``P`` products (Cholesky
    preconditioners), or, where the point has one with fewer rows than half the parameters
    (LR with ``n < P / 2``: CIFAR-10's ``P = 3073``), its factor ``UC = (U (P, n), c (P,))``,
    ``H = U U^T + diag(c)`` (Woodbury preconditioners: ``n x n`` work instead of ``P x
    P``). Above ``dense_max`` parameters no dense ``H`` is formed and CG runs
    unpreconditioned.
    """

    def __init__(self, tol=1e-9, maxiter=100, refresh=12, dense_max=5000):
        self.tol, self.maxiter, self.refresh = tol, maxiter, refresh
        self.dense_max = dense_max       # above this P: plain CG, no dense factor
        self.H = None                    # the dense Hessian at the last refresh, (P, P)
        self.UC = None                   # or its low-rank factor (U, c)
        self.factors = {}                # mu -> r -> (H + mu I)^{-1} r
        self.counts = {"refreshes": 0, "cg": 0, "newton": 0}

    def rebuild(self, point):
        """Take the Hessian at ``point``: its factor ``(U, c)`` when ``n < P / 2``, else
        dense (``P`` products, blocked where the model can); the preconditioners of ``H +
        mu I`` are formed as :meth:`solve` needs them."""
        f = point.hessian_factor()
        if f is not None and 2 * f[0].shape[1] < f[0].shape[0]:
            self.H, self.UC = None, f
        else:
            self.H, self.UC = dense_hessian(point.hvp, point.w, point.hvp_block), None
        self.factors = {}
        self.counts["refreshes"] += 1

    INVERSE_MAX = 1500      # up to this P the explicit inverse is cheaper to apply

    def preconditioner(self, mu):
        """``r -> (H + mu I)^{-1} r`` for the stored Hessian (:meth:`_woodbury` for a
        factor). Dense: from the Cholesky factor; for ``P <= INVERSE_MAX`` the explicit
        inverse (one matrix-vector product, half the memory traffic of two triangular
        solves), above it the two solves (forming the inverse would cost ``2 P^3``)."""
        if mu not in self.factors:
            self.factors[mu] = self._woodbury(mu) if self.UC is not None else \
                self._cholesky(mu)
        return self.factors[mu]

    def _cholesky(self, mu):
        xp = get_array_module(self.H)
        eye = xp.eye(self.H.shape[0], dtype=self.H.dtype)
        L = cho_factor(self.H + mu * eye)
        if self.H.shape[0] <= self.INVERSE_MAX:
            M = cho_solve(L, eye)
            return lambda r: M @ r
        return lambda r: cho_solve(L, r)

    def _woodbury(self, mu):
        """``r -> (U U^T + D)^{-1} r``, ``D = diag(c + mu)``, by Woodbury: ``D^{-1} r - D^{-1}
        U (I_n + U^T D^{-1} U)^{-1} U^T D^{-1} r`` (one ``n x n`` Cholesky). A zero entry
        of ``D`` (the unpenalised bias without damping) is taken as ``D``'s largest: a
        preconditioner need not be exact (PCG still solves the true system), and one
        changed entry costs CG at most a step or two."""
        U, c = self.UC
        xp = get_array_module(U)
        d = c + mu
        top = float(d.max())
        d = xp.where(d > 0, d, top if top > 0 else 1.0)
        Ud = U / d[:, None]                                            # D^{-1} U, (P, n)
        K = U.T @ Ud
        K[xp.diag_indices_from(K)] += 1.0                              # I + U^T D^{-1} U
        L = cho_factor(K)
        return lambda r: r / d - Ud @ cho_solve(L, Ud.T @ r)

    def solve(self, point, b, damping=0.0, tol=1e-10):
        """``u = (H + mu I)^{-1} b`` ``(P,)`` at ``point`` by PCG; returns ``(u, info)``."""
        if b.shape[0] > self.dense_max:                      # too large to factor
            u, info = solve_hvp(point.hvp, b, solver="cg", tol=tol, damping=damping)
            self.counts["cg"] += info["iterations"]
            return u, info
        if self.H is None and self.UC is None:
            self.rebuild(point)
        u, info = solve_hvp(point.hvp, b, solver="cg", tol=tol, damping=damping,
                            precond=self.preconditioner(float(damping)),
                            maxiter=10 * self.refresh + 50)
        self.counts["cg"] += info["iterations"]
        if info["iterations"] > self.refresh:
            self.rebuild(point)                                  # stale: refresh for next time
        return u, info

    def minimize(self, at, w):
        """``w*`` from ``w`` (``at(w)`` returns the Point of ``L`` at ``w``); ``(w*, info)``."""
        xp = get_array_module(w)
        pt = at(w)
        g = pt.grad()
        f = float(pt.loss())
        gnorm = float(xp.linalg.norm(g))
        it = 0
        while gnorm > self.tol and it < self.maxiter:
            it += 1
            d, _ = self.solve(pt, g, tol=min(0.1, max(gnorm, 1e-12)))
            slope = float(g @ d)
            t = 1.0
            while True:                                          # Armijo backtracking
                pt_new = at(w - t * d)
                f_new, g_new = float(pt_new.loss()), pt_new.grad()
                gn_new = float(xp.linalg.norm(g_new))
                if f_new <= f - 1e-4 * t * slope or (gn_new < gnorm and f_new <= f + 1e-12
                                                     * abs(f)) or t < 1e-10:
                    break
                t *= 0.5
            w, pt, f, g, gnorm = pt_new.w, pt_new, f_new, g_new, gn_new
        self.counts["newton"] += it
        if not (gnorm <= self.tol) and math.isfinite(gnorm):
            warn(f"Exact(): Newton stopped at |grad L| = {gnorm:.3g} > tol = {self.tol:g} "
                 f"after {it} steps")
        return w, {"newton": it, "grad_norm": gnorm}


__all__ = ["GD", "Exact", "Newton", "as_victim", "VICTIMS", "DEFAULT_T", "DEFAULT_ETA"]
