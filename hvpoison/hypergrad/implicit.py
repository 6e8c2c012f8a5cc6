"""Implicit hypergradients at a stationary point (Eq. 4).

At ``w*`` with ``grad_w L(w*; D_tr', lam) = 0`` the implicit function theorem gives

    ``H u = grad_w l(w*; D_val)``,   ``grad_{X_p} = -M_X^T u``,   ``grad_lam = -M_lam^T u``

with ``H = grad_w^2 L``, ``M_X = grad_{X_p} grad_w L`` and ``M_lam = grad_lam grad_w L``
(only products with ``u`` are formed): :func:`eq4`, the one place these three lines are
written, given a stationary point and a linear solve.  :func:`solve_hvp` is the one
linear-solve entry point: it takes a Hessian-vector product and solves ``H u = b`` by conjugate gradients
(SciPy's ``cg`` over a ``LinearOperator``; cupyx on the GPU) or densely for small ``P``.
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.optimize

from .. import _checks
from ..backend import get_array_module, is_cupy_array, sparse_linalg, to_numpy
from .result import ConvergenceWarning, Hypergrad, warn

SOLVERS = ("auto", "cg", "dense")


def _newton_polish(point, w, tol, steps):
    """Up to ``steps`` Newton steps ``w -= H^{-1} g`` (solved with :func:`solve_hvp`), each
    kept only if it lowers ``|g|`` without raising ``L``.  SciPy's trust-region methods stop around
    ``|g| ~ 1e-11`` on their own; Eq. 4 and its finite-difference checks want ``w*`` to
    round-off, which a converged Newton step gives in one or two steps."""
    xp = get_array_module(w)
    gnorm, loss, taken = float(xp.linalg.norm(point(w).grad())), float(point(w).loss()), 0
    for _ in range(steps):
        if gnorm <= tol * 1e-3:
            break
        pt = point(w)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            step, _ = solve_hvp(pt.hvp, pt.grad(), tol=1e-14)
        w_new = w - step
        g_new = float(xp.linalg.norm(point(w_new).grad()))
        loss_new = float(point(w_new).loss())
        if not (g_new < gnorm and loss_new <= loss + 1e-12 * abs(loss)):
            break                    # an indefinite H can send Newton to a saddle: refuse
        w, gnorm, loss, taken = w_new, g_new, loss_new, taken + 1
    return w, taken


def _start_like(obj, X):
    """``model.init(0)`` on the device of ``X`` (an array or Prepared data), in its dtype
    when that is float32/float64 (else float64, and the data check names ``X``)."""
    X = getattr(X, "X", X)
    dtype = getattr(X, "dtype", None)
    return obj.model.init(0, dtype=dtype if dtype in (np.float32, np.float64) else np.float64,
                          device="gpu" if is_cupy_array(X) else None)


def train_stationary(obj, X, y, lam=None, w0=None, *, tol=1e-10, maxiter=1000,
                     method="trust-ncg", polish=3):
    """``w* = argmin_w L(w; D, lam)`` (the inner problem of Eq. 1, as Eq. 4 needs it) by a
    SciPy second-order method using our ``H v``; ``X`` ``(n, d)``, ``w*`` ``(P,)``.

    Runs SciPy on the host in float64 (its optimisers are host-only), then takes up to
    ``polish`` Newton steps to bring ``|grad L|`` down to round-off; returns ``w*`` in
    ``w0``'s dtype and array module (``w0`` defaults to ``model.init(0)`` on ``X``'s device
    and in its dtype).  ``tol`` is the gradient-norm tolerance.

    Returns ``(w_star, info)`` with
    ``info = {iterations, newton_steps, grad_norm, converged, message}``.
    """
    w0 = _start_like(obj, X) if w0 is None else w0
    xp, dtype = get_array_module(w0), w0.dtype
    _checks.params("w0", w0, obj.model.n_params)
    data = obj.as_prepared(X, y, lam, dtype=dtype)  # validates every argument once
    cache = {}

    def point(x):
        key = x.tobytes()
        if key not in cache:
            cache.clear()
            cache[key] = obj.linearize(xp.asarray(x, dtype=dtype), data)
        return cache[key]

    res = scipy.optimize.minimize(
        lambda x: float(point(x).loss()),
        to_numpy(w0).astype(np.float64),
        jac=lambda x: to_numpy(point(x).grad()).astype(np.float64),
        hessp=lambda x, p: to_numpy(point(x).hvp(xp.asarray(p, dtype=dtype))).astype(np.float64),
        method=method,
        options={"gtol": tol, "maxiter": maxiter} if method.startswith("trust")
        else {"xtol": tol, "maxiter": maxiter},
    )
    w_star, newton = _newton_polish(lambda w: point(to_numpy(w)), xp.asarray(res.x, dtype=dtype),
                                    tol, polish)
    gnorm = float(xp.linalg.norm(point(to_numpy(w_star)).grad()))
    info = {"iterations": int(res.nit), "newton_steps": newton, "grad_norm": gnorm,
            "converged": gnorm <= tol, "message": str(res.message)}
    if not info["converged"]:
        warn(f"training did not reach stationarity (|grad| = {gnorm:.3g} > tol = {tol:g}: "
             f"{res.message}); the implicit hypergradient assumes grad_w L = 0")
    return w_star, info


def dense_hessian(hvp, like, hvp_block=None, block=256):
    """``H`` ``(P, P)``, symmetrised, from ``P`` products ``hvp(e_i)``, or from blocked
    products ``hvp_block(E)`` of ``block`` unit columns at a time when given (``like``: a
    ``(P,)`` array giving the module and dtype)."""
    xp = get_array_module(like)
    P = like.shape[0]
    H = xp.empty((P, P), dtype=like.dtype)
    if hvp_block is not None:
        eye = xp.eye(P, dtype=like.dtype)
        for j in range(0, P, block):
            H[:, j:j + block] = hvp_block(eye[:, j:j + block])
        return 0.5 * (H + H.T)
    basis = xp.zeros(P, dtype=like.dtype)
    for i in range(P):
        basis[i] = 1.0
        H[:, i] = hvp(basis)
        basis[i] = 0.0
    return 0.5 * (H + H.T)


def solve_hvp(hvp, b, *, solver="auto", tol=1e-10, maxiter=None, dense_max=2000,
              damping=0.0, precond=None, x0=None):
    """Solve ``(H + mu I) u = b`` (the linear system of Eq. 4; ``mu = damping``, 0 by
    default) given only ``hvp(v) = H v`` (``H`` symmetric ``P x P``, never formed; ``b`` and
    ``u`` of shape ``(P,)``).

    ``solver='cg'``: conjugate gradients over a ``LinearOperator`` (``O(sqrt(kappa))``
    products), preconditioned by ``precond(r) ~ (H + mu I)^{-1} r`` when given and started
    from ``x0``; ``'dense'``: build ``H`` column by column from ``P`` products and solve;
    ``'auto'``: dense when ``P <= dense_max`` and no ``precond`` is given.  Returns ``(u,
    info)`` with ``info = {solver, iterations, residual, converged}``, ``residual =
    ||(H + mu I) u - b|| / ||b||``.

    ``damping > 0`` filters the near-null curvature directions that ``H^{-1}`` amplifies
    (the damped hypergradient of :class:`hvpoison.victims.Implicit`); as ``mu -> 0`` the
    solution tends to the undamped one.
    """
    if solver not in SOLVERS:
        _checks.fail("solver", f"one of {SOLVERS}", repr(solver))
    damping = _checks.nonnegative_float("damping", damping)
    if precond is not None and not callable(precond):
        _checks.fail("precond", "None or a callable r -> M r", repr(precond), TypeError)
    xp = get_array_module(b)
    P = b.shape[0]
    if damping:
        plain = hvp

        def hvp(v):
            return plain(v) + damping * v
    if solver == "auto":
        solver = "dense" if P <= dense_max and precond is None else "cg"
    if solver == "dense":
        H = dense_hessian(hvp, b)
        try:
            u = xp.linalg.solve(H, b)
        except np.linalg.LinAlgError:
            warn("H is singular: using the least-squares (minimum-norm) solution")
            u = xp.linalg.lstsq(H, b, rcond=None)[0]
        iterations = P
    else:
        spla = sparse_linalg(xp)
        op = spla.LinearOperator((P, P), matvec=lambda v: hvp(v.ravel()), dtype=b.dtype)
        M = None if precond is None else spla.LinearOperator(
            (P, P), matvec=lambda r: precond(r.ravel()), dtype=b.dtype)
        count = [0]

        def callback(_):
            count[0] += 1

        try:
            u, _ = spla.cg(op, b, x0=x0, rtol=tol, atol=0.0, maxiter=maxiter, M=M,
                           callback=callback)
        except TypeError:  # pragma: no cover - cupyx's older keyword
            u, _ = spla.cg(op, b, x0=x0, tol=tol, atol=0.0, maxiter=maxiter, M=M,
                           callback=callback)
        iterations = count[0]
    bnorm = float(xp.linalg.norm(b))
    residual = float(xp.linalg.norm(hvp(u) - b)) / (bnorm if bnorm > 0 else 1.0)
    converged = residual <= max(tol, 1e3 * np.finfo(b.dtype).eps) * 10
    if not converged:
        warn(f"{solver} solve of (H + mu I) u = b stopped at relative residual "
             f"{residual:.3g} (tol {tol:g}); H may be indefinite or ill-conditioned")
    return u, {"solver": solver, "iterations": iterations, "residual": residual,
               "converged": converged}


def eq4(point, grad_out, solve, rows=None):
    """Eq. 4 at a stationary ``point`` (a :class:`~hvpoison.objective.Point` at ``w*``):
    ``u = solve(grad_out)`` for ``(H + mu I) u = grad_w l(w*; D_val)`` (``solve(b) -> (u,
    info)``: :func:`solve_hvp`, or the Exact victim's preconditioned
    :meth:`~hvpoison.victims.Newton.solve`), then ``grad_{X_p} = -M_X^T u`` on the
    poisoning ``rows`` (an index array; None: not formed) and ``grad_lam = -M_lam^T u``.

    Returns ``(dXp, dlam, info)``: ``dXp`` ``(len(rows), d)`` or None, ``dlam`` in the shape
    of ``lam`` (None without a penalty), ``info`` the solve's."""
    u, info = solve(grad_out)
    if rows is None:
        mx, ml = None, point.hvp_lw(u)
    else:
        _, mx, ml = point.hvp_mixed(u, rows=rows)
    return (None if mx is None else -mx), (None if ml is None else -ml), info


def implicit_hypergrad(obj, Xtr, ytr, poison_idx, Xval, yval, lam=None, w0=None, *,
                       solver="auto", train_tol=1e-10, train_maxiter=1000,
                       method="trust-ncg", polish=3, tol=1e-10, maxiter=None,
                       dense_max=2000, damping=0.0):
    """Exact hypergradient of ``l(w*; D_val)`` at ``w* = argmin_w L(w; D_tr', lam)`` (Eq. 4).

    Parameters
    ----------
    obj : Objective
    Xtr, ytr : ``(n, d)``, ``(n,)``  training set whose rows ``poison_idx`` are ``X_p``
    poison_idx : ``(n_p,)`` int or None  rows of ``Xtr`` that are poisoning points
    Xval, yval : ``(m, d)``, ``(m,)``  trusted validation set
    lam : None, scalar or ``(n_lam,)``
    w0 : ``(P,)`` start of the training run (``model.init(0)`` by default)
    solver, tol, maxiter, dense_max : see :func:`solve_hvp`
    damping : ``mu >= 0``: solve ``(H + mu I) u = grad l_val`` instead (a damped
        hypergradient; exact Eq. 4 at ``mu = 0``)
    train_tol, train_maxiter, method, polish : see :func:`train_stationary`

    Eq. 4 assumes a stationary ``w*`` with non-singular ``H``.  That holds for LR with L2;
    for the MLP (Leaky ReLU, piecewise smooth) minima often sit on a kink or have null
    directions, in which case the warnings about stationarity or the linear solve say so.

    Returns
    -------
    Hypergrad with ``dXp`` ``(n_p, d)`` (None when ``poison_idx`` is None), ``dlam`` in
    the shape of ``lam``, ``value = l(w*; D_val)`` and ``info = {w, train, linear}``.
    """
    w_star, train_info = train_stationary(obj, Xtr, ytr, lam, w0, tol=train_tol,
                                          maxiter=train_maxiter, method=method,
                                          polish=polish)
    data = obj.as_prepared(Xtr, ytr, lam, ("Xtr", "ytr"), w_star.dtype)
    point = obj.linearize(w_star, data)
    rows = _checks.rows("poison_idx", poison_idx, data.X.shape[0], point.xp)
    val = obj.linearize(w_star, obj.as_prepared(Xval, yval, None, ("Xval", "yval"),
                                                w_star.dtype))
    dXp, dlam, lin_info = eq4(point, val.grad(), lambda b: solve_hvp(
        point.hvp, b, solver=solver, tol=tol, maxiter=maxiter, dense_max=dense_max,
        damping=damping), rows)
    return Hypergrad(
        dXp=dXp,
        dlam=dlam,
        value=float(val.loss()),
        info={"w": w_star, "train": train_info, "linear": lin_info},
    )
