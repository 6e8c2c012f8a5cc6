"""A step size derived from the Hessian: ``eta = c / L`` for gradient descent (Eq. 6).

Gradient descent ``w_{t+1} = w_t - eta grad_w L(w_t)`` (Eq. 6) on the training objective
``L(w; D, lam) = l(w; D) + sum_k e^{lam_k} Omega(w_k)`` (Eq. 1) is stable while ``eta < 2 /
L``, ``L`` the largest eigenvalue of the Hessian ``H = grad_w^2 L`` (Eq. 4) along the path.
This module finds ``L`` over a whole ``lam`` range, so that one step size trains every
``lam`` the attack (Alg. 2) may learn inside ``lam_bounds`` (README, Defaults: [-10, 4]):

=======================  ===================================================================
:func:`resolve_eta`      what ``eta="auto"`` in :func:`~hvpoison.train`,
                         :func:`~hvpoison.unroll`, :class:`~hvpoison.GD`,
                         :func:`~hvpoison.attack` and the experiments' ``[attack]`` /
                         ``[test] eta`` resolves to
:func:`top_eigenvalue`   ``lambda_max(H)`` at one :class:`~hvpoison.objective.Point` by
                         Lanczos (``scipy.sparse.linalg.eigsh``, ``which="LA"``) on ``H v``
:func:`curvature_bound`  ``L`` over ``lam`` in ``[low, high]``: for LR a bound that holds at
                         every ``w``; for the MLP the curvature at ``w_0`` times
                         :data:`MLP_SAFETY`, plus the penalty's ``e^high``
:func:`auto_eta`         ``c / L``, ``c = C = 1`` (half the ``2 / L`` stability limit)
:func:`task_table`       per task: ``L``, the auto step, the protocol's fixed ``ETA`` and
                         ``ETA * L`` (:func:`format_table`: the README's derived table)
=======================  ===================================================================

Shapes: ``X`` ``(n, d)``, ``y`` ``(n,)`` in {0, 1}, ``w0`` ``(P,)``; ``A = [X 1]`` ``(n, d +
1)`` is LR's design matrix with the bias column.

What the bound does not promise: with L1, GD takes subgradient steps ``eta e^lam sign(w)``,
and weights the data no longer hold circle around 0 in a limit cycle of width ``eta (e^lam
+ |grad l|)``; where ``e^lam >= |grad l(0)|_inf`` the optimum of LR is ``w = 0``, where LR
starts, so no step size keeps the loss from rising there (the iterates stay bounded; see
``tests/test_stepsize.py``). A proximal (soft-thresholding) step would remove the cycle.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from . import _checks
from .backend import get_array_module, to_numpy
from .models.lr import LR
from .objective import Objective

C = 1.0
"""The default ``c`` of ``eta = c / L``: 1, half the stability limit ``2 / L``.

Why 1 rather than the protocol's ~1.4 (``ETA`` = 0.1, 0.04, 0.02 are 1.46, 1.32, 1.48 times
``1 / L_data`` of LR on MNIST, F-MNIST, CIFAR-10): (i) for LR with L2, ``L`` is reached at
``w = 0``, where LR starts: ``c = 1`` removes the top direction's error in one step (``|1 -
c| = 0``), 1.4 leaves it ringing at 0.4 a step; (ii) the MLP's ``L`` is an estimate, and
``c = 1`` keeps a factor 2 against what it misses (the measurements under
:data:`MLP_SAFETY`); (iii) the MLP with L1 moves every weight by ``eta e^lam`` a step, which
``c = 1`` keeps below 1 at every ``lam <= high``: measured on the embedded MNIST subset
(784-32-16-1, ``n = 1000``, 200 steps), training diverged at ``eta e^lam`` = 1.4 (``lam =
3``) and 3.8, reached ``|w| = 62`` at 1.6, and trained at 0.8 and below. The price:
steps 1.4x shorter along the flat directions. ``c >= 2`` is refused; ``c = 2.5`` fails the
training checks of ``tests/test_stepsize.py`` in 12 of their 20 cases (``c = 4``: 17; the
MLP with L2, whose weights shrink towards 0 where only ``e^lam`` is left, needs ``c >= 3``
on MNIST to break)."""

MLP_SAFETY = 2.0
"""Factor on the MLP's data curvature at ``w_0``, ``L = MLP_SAFETY lambda_max(H_data(w_0)) +
e^high``: the MLP has no global bound (``H`` moves with ``w``; it may be indefinite).

Measured (784-32-16-1 and 3072-32-16-1, Xavier ``w_0``, seeds 0-4, ``n = 1000``, no penalty,
200 steps of ``eta = 1 / lambda_max(H(w_0))``, i.e. safety 1), the top eigenvalue
``lambda_max(H(w_t)) / lambda_max(H(w_0))`` peaked at 1.45 on MNIST and F-MNIST, 1.34 on
CIFAR-10, 1.33 on the embedded MNIST subset (L2 ``lam = -2`` alike; with L1 ``lam = -5``,
transient spikes to 5.2), and on uniform ``[0, 1]`` features at 4.0 (``d = 784``) and 2.2
(``d = 3072``): there the curvature climbs from a low start towards that of the data's mean
direction. No run diverged, even at ``eta lambda_max = 4`` (gradient descent at the edge
of stability self-stabilises; Cohen et al., ICLR 2021). With safety 2 the two runs that
sharpened most (uniform ``d = 784``) peaked at ``eta lambda_max`` = 1.42 and 1.17 within
200 steps, so ``c = 1`` keeps ``eta lambda_max < 2`` along the protocol's ``T = 200`` on
every measured run; longer training may still sharpen to ``2 / eta`` (2.7 by step 400 on
that run).
``lambda_max(H(w_0))`` itself varies with the seed (MNIST 3.3-9.7, F-MNIST 4.3-31, CIFAR-10
16-31): pass the ``w0`` gradient descent will start from."""

DEFAULT_TOL = 1e-6


def _operator(point):
    """``H`` at ``point`` as a float64 numpy ``LinearOperator`` ``(P, P)`` (copies to and
    from the device when the point lives on a GPU)."""
    from scipy.sparse.linalg import LinearOperator

    xp, dtype, P = point.xp, point.w.dtype, point.w.shape[0]

    def matvec(v):
        v = xp.ascontiguousarray(xp.asarray(np.ravel(v), dtype=dtype))
        return to_numpy(point.hvp(v)).astype(np.float64, copy=False)

    def matmat(V):
        V = xp.ascontiguousarray(xp.asarray(V, dtype=dtype))
        return to_numpy(point.hvp_block(V)).astype(np.float64, copy=False)

    return LinearOperator((P, P), matvec=matvec, matmat=matmat, rmatvec=matvec,
                          dtype=np.float64)


def top_eigenvalue(point, tol=DEFAULT_TOL, maxiter=None, seed=0) -> float:
    """``lambda_max(H)``, the largest (algebraic) eigenvalue of the Hessian ``H`` ``(P, P)``
    of Eq. 4 at ``point`` (a :class:`~hvpoison.objective.Point` from ``obj.at(w, X, y,
    lam)``), by Lanczos on ``H v`` (``scipy.sparse.linalg.eigsh``, ``k=1``, ``which="LA"``)
    from a seeded start vector, so the same point gives the same value.

    ``H`` of LR is positive semi-definite (``A^T diag(s(1 - s)) A / n`` plus the penalty's
    ``e^lam I``); the MLP's may be indefinite. The largest *algebraic* eigenvalue is what
    bounds gradient descent (Eq. 6): a step is stable along an eigenvector while ``eta
    lambda < 2``, and negative eigenvalues only push ``w`` away from a saddle, so the most
    negative one (the largest in magnitude, what power iteration finds) does not matter.

    ``tol``: ARPACK's relative accuracy of the eigenvalue; ``maxiter``: its restarts
    (default ``10 P``); ``seed``: the start vector's. ``P <= 2``, or a breakdown of
    Lanczos (``H`` zero or of tiny rank, e.g. a saturated sigmoid without penalty), falls
    back to Rayleigh-Ritz on the start vector's Krylov space (exact there). Raises
    ``ValueError`` naming ``tol`` / ``maxiter`` on bad values, and ``RuntimeError`` when
    Lanczos does not converge.
    """
    from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, eigsh

    tol = _checks.positive_float("tol", tol)
    if maxiter is not None:
        maxiter = _checks.positive_int("maxiter", maxiter)
    P = point.w.shape[0]
    op = _operator(point)
    v0 = np.random.default_rng(seed).standard_normal(P)
    if P <= 2:                                   # ARPACK needs k < P; dense is exact here
        return _ritz_top(op, v0, P)
    try:
        vals = eigsh(op, k=1, which="LA", v0=v0, tol=tol, maxiter=maxiter,
                     return_eigenvectors=False)
    except ArpackNoConvergence as err:
        raise RuntimeError(f"top_eigenvalue: Lanczos did not converge to tol = {tol:g} in "
                           f"maxiter = {maxiter} restarts (P = {P}); raise maxiter or tol"
                           ) from err
    except ArpackError:
        # a breakdown: the Krylov space of v0 is invariant (H is zero or of tiny rank, e.g. a
        # saturated sigmoid without penalty), so its Ritz values are exact
        return _ritz_top(op, v0, min(P, 40))
    return float(vals[-1])


def curvature(obj, w0, X, y=None, lam=None, seed=0) -> float:
    """``L = lambda_max(H)`` of ``obj`` (Eq. 1) at ``w0`` ``(P,)`` on ``X`` ``(n, d)``, ``y``
    ``(n,)`` (or :class:`~hvpoison.objective.Prepared` ``X``) at ``lam``:
    :func:`top_eigenvalue` of ``obj.at(w0, X, y, lam)``. Gradient descent from ``w0`` is
    stable only for ``eta < 2 / L`` (for LR at ``w0 = 0``, ``L = lambda_max(A^T A / n) / 4 +
    e^lam``, the most it gets). What the divergence message, the runner's preflight and
    :meth:`~hvpoison.victims.GD.stable_lam` quote (one estimator for all of them)."""
    return top_eigenvalue(obj.at(w0, X, y, lam), seed=seed)


def _ritz_top(op, v0, m):
    """The largest Ritz value of ``op`` on the Krylov space of ``v0`` (at most ``m``
    vectors, fully re-orthogonalised; stops where the space is invariant)."""
    Q = [v0 / np.linalg.norm(v0)]
    HQ = []
    for j in range(m):
        h = op.matvec(Q[j])
        HQ.append(h)
        if j == m - 1:
            break
        r = h.copy()
        for _ in range(2):
            for q in Q:
                r -= (q @ r) * q
        norm = np.linalg.norm(r)
        if not norm > 1e-10 * max(np.linalg.norm(h), 1e-300):
            break
        Q.append(r / norm)
    Qm, Hm = np.stack(Q[:len(HQ)], axis=1), np.stack(HQ, axis=1)
    Tm = Qm.T @ Hm
    return float(np.linalg.eigvalsh(0.5 * (Tm + Tm.T))[-1])


def check_lam_bounds(lam_bounds):
    """``(low, high)`` floats from ``lam_bounds``, a pair of finite numbers with ``low <
    high`` (the box ``Lam`` of ``lam`` in Alg. 2), else the project's ``ValueError``."""
    try:
        lo, hi = lam_bounds
        ok = all(isinstance(b, numbers.Real) and not isinstance(b, bool) for b in (lo, hi)) \
            and math.isfinite(lo) and math.isfinite(hi) and lo < hi
    except (TypeError, ValueError):
        ok = False
    if not ok:
        _checks.fail("lam_bounds", "[low, high] with finite low < high", repr(lam_bounds))
    return float(lo), float(hi)


def penalty_term(obj) -> bool:
    """Whether :func:`curvature_bound` adds ``e^high`` for ``obj``'s penalty: for L2 (its
    Hessian ``e^lam I``) and for the MLP's L1 (see there); not for LR's L1 or no penalty."""
    if obj.penalty is None:
        return False
    return obj.penalty.kind == "l2" or not isinstance(obj.model, LR)


def curvature_bound(obj, X, y, lam_bounds, w0=None, *, safety=MLP_SAFETY, seed=0) -> float:
    """``L`` bounding ``lambda_max(H)`` (Eq. 4) of ``obj`` (Eq. 1) on ``X`` ``(n, d)``, ``y``
    ``(n,)`` for every ``lam`` in ``lam_bounds = (low, high)`` (shared or per layer: each
    ``lam_k <= high``).

    * LR: ``H = A^T diag(s (1 - s)) A / n + H_pen`` with ``s (1 - s) <= 1/4``, so ``L =
      lambda_max(A^T A) / (4 n) + e^high`` with L2 holds at *every* ``w`` (Weyl; the
      unpenalised bias makes it a hair above the true top at ``w = 0``); the data term is
      the Hessian without penalty at ``w = 0`` (where ``s (1 - s) = 1/4``), by
      :func:`top_eigenvalue`. L1 and no penalty: the data term alone. L1's subgradient
      ``e^lam sign(w)`` has no curvature, and LR's whole gradient is then bounded (by
      ``max |A_ij| + e^lam`` a coordinate), so ``w_t`` can drift at most linearly in ``t``,
      never blow up (``lam_bounds`` is checked, unused).
    * MLP: no global bound exists (the curvature moves with ``w``, ``H`` may be
      indefinite): ``L = safety lambda_max(H_data(w_0)) + e^high``, ``w_0`` ``(P,)`` the
      given start or ``model.init(seed)`` (the Xavier ``initW``), ``safety`` =
      :data:`MLP_SAFETY` as measured. ``e^high`` is added for L1 too: not as curvature, but
      to keep the subgradient's move ``eta e^lam`` of each weight below ``c``; larger
      moves blow the layered model up (measured, :data:`C`). No penalty: no ``e^high``.

    ``w0`` is ignored for LR (the bound holds everywhere); ``seed`` draws the MLP's
    default ``w_0`` and Lanczos' start vector. Returns a positive float.
    """
    lo, hi = check_lam_bounds(lam_bounds)
    safety = _checks.positive_float("safety", safety)
    if safety < 1:
        _checks.fail("safety", "a factor >= 1", repr(safety))
    model = obj.model
    xp = get_array_module(X)
    data = Objective(model, None)                   # l(w; D) of Eq. 1, no penalty
    if isinstance(model, LR):
        w = xp.zeros(model.n_params, dtype=X.dtype)
        factor = 1.0
    else:
        w = model.init(seed, dtype=X.dtype, device="gpu" if xp is not np else None) \
            if w0 is None else w0
        factor = safety
    L = factor * max(top_eigenvalue(data.at(w, X, y), seed=seed), 0.0)
    if penalty_term(obj):
        L += math.exp(hi)
    if not (L > 0 and math.isfinite(L)):
        _checks.fail("X", "data with some curvature (a positive, finite lambda_max)", f"L = {L}")
    return L


def auto_eta(obj, X, y, lam_bounds, c=C, w0=None, **kw) -> float:
    """``eta = c / L`` for Eq. 6, ``L`` = :func:`curvature_bound` over ``lam_bounds`` on ``X``
    ``(n, d)``, ``y`` ``(n,)`` (``w0`` ``(P,)``: the MLP's start, default its Xavier draw).

    ``c`` must lie in ``(0, 2)`` (``2 / L`` is the stability limit); the default :data:`C` =
    1 is half of it: see there for why (and why not the protocol's 1.4). ``kw`` goes to
    :func:`curvature_bound` (``safety``, ``seed``).
    """
    c = _checks.positive_float("c", c)
    if not c < 2:
        _checks.fail("c", "a number in (0, 2) (eta = c / L; 2 / L is the stability limit)",
                     repr(c))
    return c / curvature_bound(obj, X, y, lam_bounds, w0, **kw)


AUTO = "auto"


def resolve_eta(eta, obj, data, lam_bounds=None, w0=None) -> float:
    """The step of Eq. 6: ``eta`` itself (a positive number), or for ``eta="auto"``
    :func:`auto_eta` on :class:`~hvpoison.objective.Prepared` ``data`` (``X`` ``(n, d)``)
    over ``lam_bounds`` (Alg. 2's box, when ``lam`` is learned), else at ``data``'s own
    ``lam`` (its largest entry; no penalty term without one). ``w0`` ``(P,)``: the MLP's
    start."""
    eta = check_eta(eta)
    if eta == AUTO:
        if lam_bounds is None:
            if data.e is None:
                obj, lam_bounds = Objective(obj.model, None), (0.0, 1.0)   # no e^lam term
            else:
                hi = math.log(float(to_numpy(data.e).max()))
                lam_bounds = (hi - 1.0, hi)
        return auto_eta(obj, data.X, data.y, lam_bounds, w0=w0)
    return eta


def check_eta(eta):
    """``eta`` of Eq. 6 checked: ``"auto"``, or a positive finite number (as a float)."""
    if isinstance(eta, str):
        if eta != AUTO:
            _checks.fail("eta", "a positive number or 'auto' (c / L from the Hessian)",
                         repr(eta))
        return eta
    return _checks.positive_float("eta", eta)


__all__ = ["C", "MLP_SAFETY", "AUTO", "top_eigenvalue", "curvature_bound", "auto_eta",
           "resolve_eta", "check_eta", "check_lam_bounds"]
