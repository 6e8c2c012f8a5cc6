"""Alg. 2: the multiobjective poisoning attack, projected hypergradient ascent on ``X_p``
and descent on ``lam`` (Eq. 2-3).

::

    D_p   = initDp(D_val, n_p)      clone n_p rows of D_val (no duplicates), flip labels  [A1]
    D_tr' = D_tr with rows I replaced by D_p                                              [A2]
    lam   = initL()                                                                       [A3]
    for k = 1 .. K:
        w_0 = initW()               zeros for LR, a fresh Xavier draw for the MLP         [A4]
        (grad_Xp, grad_lam) = RMD(...)                                    (Alg. 1)        [A5]
        X_p = Pi_Phi(X_p + alpha grad_Xp / ||grad_Xp||)        ascent, box projection     [A6]
        lam = Pi_Lam(lam - alpha_lam grad_lam / |grad_lam|)    descent, per component     [A7]

Poisoning fractions are cumulative: optimise a batch of ``n_poison`` points, freeze it,
replace the next ``n_poison`` clean rows, re-initialise ``lam`` and repeat.

The attacker's objective (Eq. 2) is the validation loss (Eq. 3, default); or, with
``target=(X_t, y_t)``, the loss on a separate target set: maximised (indiscriminate) or,
with ``targeted=True``, minimised towards the attacker's labels ``y_t``.  The defender
always learns ``lam`` on the validation set.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

import numpy as np

from . import _checks, ops
from .backend import to_numpy
from .hypergrad.rmd import _rmd, unroll
from .models.lr import LR


@dataclass
class Batch:
    """Alg. 2's result after one cumulative poisoning fraction (shapes below).

    ``X, y``: the poisoned training set ``D_tr'`` (``n x d``, ``n``); ``poison_idx``: all
    its poisoned rows so far; ``lam``: the final ``lam`` (None without a penalty);
    ``trace``: per hyperiteration, the attacker's objective ``outer`` and ``lam``; plus
    ``final`` (the objective after the last step) and the ``restart`` that was kept.
    """

    fraction: float
    X: object
    y: object
    poison_idx: np.ndarray
    lam: object
    trace: dict = field(default_factory=dict)


def _no_waiting(xp):
    """Alg. 2's hyperiterations never wait for the GPU (only scalars a ``callback`` asks for
    leave it). With ``HVPOISON_CHECK_SYNC=1`` on cupy, any wait in them raises
    ``cupyx.DeviceSynchronized`` (``cupyx.allow_synchronize``): the gpu tests' check."""
    if xp is np or os.environ.get("HVPOISON_CHECK_SYNC", "0") != "1":
        return contextlib.nullcontext()
    import cupyx  # pragma: no cover - GPU only

    return cupyx.allow_synchronize(False)  # pragma: no cover


def _init_dp_rows(rng, m, n_poison):
    """initDp's validation rows: without duplicates while ``n_poison <= m``; a smaller
    validation set (Fig. 4/9) is cycled through in fresh permutations."""
    reps = -(-n_poison // m)
    return np.concatenate([rng.permutation(m) for _ in range(reps)])[:n_poison] if reps > 1 \
        else rng.choice(m, size=n_poison, replace=False)


def _lam_bounds(bounds):
    lo, hi = bounds
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        _checks.fail("lam_bounds", "finite (low, high) with low < high", repr(bounds))
    return float(lo), float(hi)


def attack(obj, Xtr, ytr, Xval, yval, *, n_poison=40, n_batches=5, iters=30, T=200,
           eta=0.1, alpha=1.0, alpha_lam=0.2, lam=None, learn_lam=False,
           lam_bounds=(-10.0, 4.0), box=None, target=None, targeted=False,
           w_init=None, restarts=1, seed=0, memory="store", callback=None, start=None):
    """Run Alg. 2 for ``n_batches`` cumulative batches of ``n_poison`` points.

    Parameters
    ----------
    obj : Objective  the victim's training objective (its ``per_layer`` decides whether a
        learned ``lam`` is one scalar or one value per layer)
    Xtr, ytr, Xval, yval : clean training set ``(n, d)`` and trusted validation set ``(m, d)``
    n_poison, n_batches : points per batch; fractions are ``b * n_poison / n``, b = 0..n_batches
    iters : hyperiterations K per batch;  T, eta : inner steps and step (Eq. 6)
    alpha, alpha_lam : outer steps for ``X_p`` (Frobenius length of the normalised step) and
        ``lam`` (per component; None = alpha)
    lam : fixed ``lam``, or the initial value (initL) when ``learn_lam``; None = no penalty
    learn_lam : learn ``lam`` on the validation set (Eq. 3), else keep it fixed
    lam_bounds : box ``Lam`` for ``lam``;  box : ``(low, high)`` feature box ``Phi``
        (default: the range of the training and validation data)
    target : None or ``(X_t, y_t)`` for Eq. 2;  targeted : minimise the loss on ``y_t``
    w_init : "zeros" (LR default) or "random" (MLP default: a fresh draw at every
        hyperiteration)
    restarts : independent initDp draws per batch; the best (highest objective) is kept
    seed : makes the run reproducible;  memory : passed to :func:`rmd`
    callback : called as ``callback(batch, k, outer_value, lam)`` after each hyperiteration
    start : None, or ``(b0, X, y)``: the poisoned training set after batch ``b0`` of an
        earlier run with the same arguments; the run goes on with batches ``b0+1 ..
        n_batches`` (only those are returned) and gives what the full run gives (each
        batch draws from its own seeded stream), so an interrupted experiment resumes

    Returns
    -------
    list of :class:`Batch`, one per fraction (the first is the clean fraction 0).
    """
    model = obj.model
    pt = obj.at(model.init(0, dtype=Xtr.dtype), Xtr, ytr, lam)       # validates Xtr, ytr, lam
    xp, ytr = pt.xp, pt.y
    yval = obj._checked(pt.w, Xval, yval)
    n, d = Xtr.shape
    n_poison = _checks.positive_int("n_poison", n_poison)
    if isinstance(n_batches, bool) or not isinstance(n_batches, (int, np.integer)) or n_batches < 0:
        _checks.fail("n_batches", "a non-negative integer", repr(n_batches))
    if n_poison * n_batches > n:
        _checks.fail("n_poison * n_batches", f"at most n = {n} rows to replace",
                     f"{n_poison} * {n_batches}")
    iters = _checks.positive_int("iters", iters)
    alpha = _checks.positive_float("alpha", alpha)
    alpha_lam = alpha if alpha_lam is None else _checks.positive_float("alpha_lam", alpha_lam)
    restarts = _checks.positive_int("restarts", restarts)
    if learn_lam and lam is None:
        _checks.fail("lam", "an initial value when learn_lam=True", "None")
    lo_lam, hi_lam = _lam_bounds(lam_bounds)
    if box is None:
        box = (float(min(Xtr.min(), Xval.min())), float(max(Xtr.max(), Xval.max())))
    if not (len(box) == 2 and box[0] < box[1]):
        _checks.fail("box", "(low, high) with low < high", repr(box))
    if w_init is None:
        w_init = "zeros" if isinstance(model, LR) else "random"
    if w_init not in ("zeros", "random"):
        _checks.fail("w_init", "'zeros' or 'random'", repr(w_init))
    if target is not None:
        Xt, yt = target
        yt = obj._checked(pt.w, Xt, yt)
    else:
        Xt, yt = Xval, yval
    sign = -1.0 if targeted else 1.0        # the attacker ascends sign * loss(target)

    # the rows I, batch by batch: a permutation that does not depend on n_batches, so a
    # run to 8 % is the first two batches of a run to 20 %
    replace = np.random.default_rng(seed).permutation(n)[: n_poison * n_batches]
    rng = None                                  # batch b draws from default_rng([seed, b])
    lam0 = None if lam is None else np.array(lam, dtype=float)
    lam_shape = pt.lam_shape

    def init_w():                                                 # [A4]
        if w_init == "zeros":
            return xp.zeros(model.n_params, dtype=Xtr.dtype)
        return model.init(int(rng.integers(2**63)), dtype=Xtr.dtype, device=None
                          if xp is np else "gpu")

    def as_lam(v):
        return None if v is None else (float(v) if v.ndim == 0 else xp.asarray(v, Xtr.dtype))

    def exp_lam(v):             # e = exp(lam) per penalty group, computed on the device
        return None if v is None else obj._exp_groups(
            xp.broadcast_to(v, (obj.n_lam,)).astype(Xtr.dtype))

    def objective(Xc, yc, lam_, w0):
        w_T = unroll(obj, w0, Xc, yc, as_lam(lam_), T, eta)
        return sign * float(obj.val_loss(w_T, Xt, yt))

    X, y, b0 = Xtr.copy(), ytr.copy(), -1
    if start is not None:
        b0, X, y = start
        if isinstance(b0, bool) or not isinstance(b0, (int, np.integer)) or not 0 <= b0 <= n_batches:
            _checks.fail("start[0]", f"a batch index in [0, {n_batches}]", repr(b0))
        y = obj._checked(pt.w, X, y)
        if X.shape != Xtr.shape:
            _checks.fail("start[1]", f"the poisoned training set of shape {Xtr.shape}",
                         _checks._describe(X))
        X, y = X.copy(), y.copy()
    batches = []
    for b in range(b0 + 1, n_batches + 1):
        rng = np.random.default_rng([seed, b])
        rows = replace[(b - 1) * n_poison: b * n_poison] if b else np.array([], dtype=np.int64)
        rows_x = xp.asarray(rows) if b else None
        best = None
        for r in range(restarts if b else 1):
            Xc, yc = X.copy(), y.copy()
            if b:                                                 # [A1], [A2]
                src = _init_dp_rows(rng, Xval.shape[0], n_poison)
                src = xp.asarray(src)
                Xc[rows_x] = Xval[src]
                yc[rows_x] = 1 - yval[src]
            lam_k = None if lam0 is None else xp.asarray(lam0)     # [A3], float64
            outer, lams = [], []           # kept on the device until the batch ends
            with _no_waiting(xp):
                for k in range(iters if (b or learn_lam) else 1):
                    w0 = init_w()
                    e = exp_lam(lam_k)
                    hg = _rmd(obj, w0, Xc, yc, rows_x, Xt, yt, e, lam_shape, T, eta,
                              memory)                                  # [A5]
                    outer.append(hg.value)
                    lams.append(lam_k)
                    if b:
                        g = sign * hg.dXp
                        norm = xp.linalg.norm(g)                       # g = 0: no step
                        scale = (alpha / xp.where(norm > 0, norm, 1.0)).astype(Xtr.dtype)
                        Xc[rows_x] = ops.impl("ascent_project", xp)(
                            xp, Xc[rows_x], g, scale, box[0], box[1])  # [A6]
                    if learn_lam:                                      # [A7]
                        dlam = hg.dlam
                        if target is not None:                         # defender: val loss
                            dlam = _rmd(obj, w0, Xc, yc, None, Xval, yval, e, lam_shape, T,
                                        eta, memory).dlam
                        # g / |g| per component
                        lam_k = xp.clip(lam_k - alpha_lam * xp.sign(dlam), lo_lam, hi_lam)
                    if callback is not None:       # asked for: a wait for the device
                        callback(b, k, sign * float(hg.value),
                                 None if lam_k is None else to_numpy(lam_k))
            trace = {"outer": (sign * to_numpy(xp.stack(outer))).tolist(),
                     "lam": [None if v is None else to_numpy(v).tolist() for v in lams]}
            trace["final"] = objective(Xc, yc, lam_k, init_w())
            trace["restart"] = r
            if best is None or trace["final"] > best[2]["final"]:
                best = (Xc, yc, trace, lam_k)
        X, y, trace, lam_k = best
        batches.append(Batch(fraction=b * n_poison / n, X=X, y=y,
                             poison_idx=np.sort(replace[: b * n_poison]),
                             lam=as_lam(lam_k), trace=trace))
    return batches
