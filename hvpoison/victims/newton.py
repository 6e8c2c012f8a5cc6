"""Newton's method with a stale preconditioner: the Exact victim's solver, and the one
linear-solve entry point of its Eq. 4 (:meth:`Newton.solve`, PCG over
:func:`hvpoison.hypergrad.implicit.solve_hvp`).

The attack keeps one :class:`Newton` across hyperiterations: it starts from the previous
``w*`` (warm start) and solves each Newton system (and the implicit hypergradient's, Eq. 4)
by conjugate gradients preconditioned with the Cholesky factor of a Hessian taken at an
earlier point, rebuilt only when CG needs more than ``refresh`` iterations. Near the optimum
one or two Newton steps of a few CG products each suffice.
"""
from __future__ import annotations

import math

from ..backend import cho_factor, cho_solve, get_array_module
from ..hypergrad import dense_hessian, solve_hvp
from ..hypergrad.result import warn


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


__all__ = ["Newton"]
