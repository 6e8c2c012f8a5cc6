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

Lines [A4]-[A6] are a *method* (:mod:`hvpoison.methods`): a hypergradient matched to the
*victim* (:mod:`hvpoison.victims`, how the defender trains) and an outer step. The default,
``method="alg2"`` against ``victim="gd"``, is the paper's algorithm above; ``"strong"`` is
the strongest recipe measured for the victim.

Poisoning fractions are cumulative: optimise a batch of ``n_poison`` points, freeze it,
replace the next ``n_poison`` clean rows, re-initialise ``lam`` and repeat.

Placement: ``"replace"`` (the paper's, default) puts each batch on clean rows, as [A2];
``"add"`` (most of the indiscriminate-poisoning literature: Steinhardt et al. 2017, Koh et
al., Suya et al.) appends each batch's ``n_poison`` points after the clean set, which is
never altered, so the victim trains on ``n + b n_poison`` rows and the fraction is
``b n_poison / n`` (the budget ``eps`` relative to the clean set). The added points start
as [A1]'s label-flipped validation clones, in either placement.

The attacker's objective (Eq. 2) is the validation loss (Eq. 3, default); or, with
``target=(X_t, y_t)``, the loss on a separate target set: maximised (indiscriminate) or,
with ``targeted=True``, minimised towards the attacker's labels ``y_t``.  The defender
always learns ``lam`` on the validation set.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass, field

import numpy as np

from . import _checks
from .backend import get_array_module, to_numpy
from .methods import METHODS, Hold, as_method
from .victims import DEFAULT_ETA, DEFAULT_T, as_victim


@dataclass
class Batch:
    """Alg. 2's result after one cumulative poisoning fraction (shapes below).

    ``X, y``: the poisoned training set ``D_tr'`` (``n x d``, ``n``; with
    ``placement="add"`` the ``n`` clean rows then the ``b n_p`` added points); ``poison_idx``:
    all its poisoned rows so far; ``lam``: the final ``lam`` (None without a penalty);
    ``trace``: per hyperiteration, the attacker's objective ``outer`` and ``lam``; plus
    ``final`` (the objective of the returned points), the ``restart`` that was kept and,
    for methods that keep the best iterate, ``best`` (its hyperiteration). ``X0``: this
    batch's ``n_p x d`` points as initDp cloned them (rows in increasing order, as
    ``X[poison_idx]`` orders the newest batch), None at fraction 0. ``victim``: the victim
    the attack anticipated (a :class:`~hvpoison.victims.GD` with ``eta="auto"`` resolved,
    or :class:`~hvpoison.victims.Exact`): ``hv.evaluate(..., victim=batch.victim)`` tests
    exactly it. ``method``: the name of the method that made the batch.
    """

    fraction: float
    X: object
    y: object
    poison_idx: np.ndarray
    lam: object
    trace: dict = field(default_factory=dict)
    X0: object = None
    victim: object = None
    method: str = None


PLACEMENTS = ("replace", "add")


def _placement(value):
    """``placement`` checked: ``"replace"`` (clean rows become poison) or ``"add"``."""
    if not (isinstance(value, str) and value in PLACEMENTS):
        _checks.fail("placement", "'replace' or 'add'", repr(value))
    return value


def _poison_rows(placement, seed, n, n_poison, n_batches):
    """The rows of ``D_tr'`` that batches ``1..n_batches`` poison, in order: a seeded
    permutation of the clean rows (``"replace"``; it does not depend on ``n_batches``, so a
    run to 8 % is the first two batches of a run to 20 %), or ``n, n+1, ...`` (``"add"``:
    appended after the clean rows)."""
    if placement == "add":
        return np.arange(n, n + n_poison * n_batches)
    return np.random.default_rng(seed).permutation(n)[: n_poison * n_batches]


def _grown(X, y, n_poison):
    """``(X, y)`` with ``n_poison`` rows appended (``"add"``: the next batch's places; their
    values are set by initDp)."""
    m = get_array_module(X)
    return (m.concatenate([X, m.zeros((n_poison, X.shape[1]), dtype=X.dtype)]),
            m.concatenate([y, m.zeros(n_poison, dtype=y.dtype)]))


def _no_waiting(xp):
    """Alg. 2's hyperiterations never wait for the GPU (only scalars a ``callback`` asks for
    leave it). With ``HVPOISON_CHECK_SYNC=1`` on cupy, any wait in them raises
    ``cupyx.DeviceSynchronized`` (``cupyx.allow_synchronize``): the gpu tests' check."""
    if xp is np or os.environ.get("HVPOISON_CHECK_SYNC", "0") != "1":
        return contextlib.nullcontext()
    import cupyx

    if not hasattr(cupyx, "allow_synchronize"):    # deprecated since cupy 10
        raise RuntimeError("HVPOISON_CHECK_SYNC=1 needs cupyx.allow_synchronize, which this "
                           "cupy does not have; unset HVPOISON_CHECK_SYNC")
    return cupyx.allow_synchronize(False)


def _init_dp_rows(rng, m, n_poison):
    """initDp's validation rows: without duplicates while ``n_poison <= m``; a smaller
    validation set (Fig. 4/9) is cycled through in fresh permutations."""
    reps = -(-n_poison // m)
    return np.concatenate([rng.permutation(m) for _ in range(reps)])[:n_poison] if reps > 1 \
        else rng.choice(m, size=n_poison, replace=False)


def _alpha_lam(step):
    """``alpha_lam=None``: the outer step's own length (Normalised's ``alpha``, Adam's
    ``lr``), 0.2 (the default) for a step without one (flip's Hold)."""
    return getattr(step, "alpha", getattr(step, "lr", 0.2))


def _lam_bounds(bounds):
    lo, hi = bounds
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        _checks.fail("lam_bounds", "finite (low, high) with low < high", repr(bounds))
    return float(lo), float(hi)


@dataclass
class Context:
    """What every part of a method reads during batch ``b`` (built and validated once by
    :func:`attack`; :meth:`make` builds one to call a method's parts directly).

    ``data``: the checked training data with the shape of ``lam`` (:class:`Prepared`; a
    hyperiteration's poisoned copy and ``lam_k`` come from :meth:`prepared`); ``out``: the
    attacker's outer set (``D_val``, or the target set); ``val``: the defender's ``D_val``;
    ``rows``: the ``n_p`` poisoning rows of batch ``b`` (an ``xp`` index array; None at
    ``b = 0``); ``rng``: batch ``b``'s seeded stream (initDp and random ``initW`` draws).
    """

    obj: object
    victim: object
    data: object
    out: object
    val: object
    target: bool              # out is not D_val
    sign: float               # the attacker ascends sign * loss(D_t)
    box: tuple
    b: int = 0
    rows: object = None
    rng: object = None

    @classmethod
    def make(cls, obj, Xval, yval, victim, *, lam=None, box=(0.0, 1.0), rows=None, b=1,
             seed=0, target=None, targeted=False):
        """A checked context for ``obj`` and ``victim`` (a name or object), ``Xval``
        ``(m, d)`` and ``lam`` of the shape the method will be given; the attacker's set is
        ``target`` (or ``D_val``)."""
        data = obj.prepare(Xval, yval, lam)
        val = obj.prepare(Xval, yval, names=("Xval", "yval"))
        out = val if target is None else obj.prepare(*target, names=("target[0]", "target[1]"),
                                                     dtype=val.dtype)
        return cls(obj, as_victim(victim), data, out, val, target is not None,
                   -1.0 if targeted else 1.0, tuple(box), b,
                   None if rows is None else data.xp.asarray(rows),
                   np.random.default_rng([seed, b]))

    @property
    def xp(self):
        return self.data.xp

    @property
    def dtype(self):
        return self.data.dtype

    def init_w(self):                                              # [A4]
        return self.victim.initial(self.obj, int(self.rng.integers(2**63)), self.out.X) \
            if self.victim.init_kind(self.obj) == "random" else \
            self.xp.zeros(self.obj.model.n_params, dtype=self.dtype)

    def prepared(self, Xc, yc, lam_k):
        """``D_tr'`` as :class:`Prepared` data: the poisoned copy ``Xc`` ``(n, d)``, ``yc``
        ``(n,)`` with ``lam_k`` (Alg. 2's, on the device: no wait for it)."""
        e = None if lam_k is None else self.obj.exp_groups(
            self.xp.broadcast_to(lam_k, (self.obj.n_lam,)).astype(self.dtype))
        return self.data.with_data(Xc, yc).with_exp_lam(e, lam_k)

    def as_lam(self, v):
        """``lam_k`` in the user's form (a float, or an ``(n_lam,)`` array): a Batch's."""
        return None if v is None else (float(v) if v.ndim == 0 else
                                       self.xp.asarray(v, self.dtype))


def init_dp(ctx, X, y, n_poison):
    """[A1]-[A2]: a copy of ``(X, y)`` whose rows ``ctx.rows`` hold ``n_poison``
    label-flipped clones of validation rows."""
    Xc, yc = X.copy(), y.copy()
    src = ctx.xp.asarray(_init_dp_rows(ctx.rng, ctx.val.X.shape[0], n_poison))
    Xc[ctx.rows] = ctx.val.X[src]
    yc[ctx.rows] = 1 - ctx.val.y[src]
    return Xc, yc


def hyperiteration(ctx, method, states, Xc, yc, lam_k, learn_lam, alpha_lam, lam_bounds):
    """One pass of [A4]-[A7]: ``(value, lam_k)``, ``Xc``'s poisoning rows updated in place."""
    hg_state, step_state = states
    xp = ctx.xp
    value, dXp, dlam = method.hypergrad(ctx, hg_state, Xc, yc, lam_k, learn_lam)  # [A4]-[A5]
    if ctx.b:
        def objective(Xp):                 # the attacker's, as the victim trains (LineSearch)
            Xtry = Xc.copy()
            Xtry[ctx.rows] = Xp
            return method.hypergrad.final(ctx, hg_state, Xtry, yc, lam_k)

        Xc[ctx.rows] = method.step(ctx, step_state, Xc[ctx.rows], ctx.sign * dXp,
                                   ctx.sign * value, objective)                  # [A6]
    if learn_lam:                                                            # [A7]
        lam_k = xp.clip(lam_k - alpha_lam * xp.sign(dlam), *lam_bounds)   # g/|g| per component
    return value, lam_k


def relearn_lam(ctx, method, Xc, yc, lam0, iters, alpha_lam, lam_bounds):
    """Eq. 3 on the points a checked keep-best returns: ``iters`` steps [A7] from ``lam0``
    with ``X_p`` held (as ``method="flip"`` learns it), ``(lam, its trajectory)``. Without
    it an earlier iterate would come back with the ``lam`` of that moment (``lam0`` itself
    when initDp's points win): the attacker choosing the defender's ``lam``."""
    held = dataclasses.replace(method, step=Hold(), keep_best=False, check_every=0,
                               hypergrad=dataclasses.replace(method.hypergrad, eval_starts=0))
    states, lam_k, lams = (held.hypergrad.start(ctx), None), ctx.xp.asarray(lam0), []
    for _ in range(iters):
        _, lam_k = hyperiteration(ctx, held, states, Xc, yc, lam_k, True, alpha_lam,
                                  lam_bounds)
        lams.append(lam_k)
    return lam_k, to_numpy(ctx.xp.stack(lams)).tolist()


def checked_at(ctx, method, state, Xc, yc, lam, candidates, checks, best=None):
    """Each candidate ``(k, X_p)`` scored as the victim trains at ``lam`` (the attacker's
    objective; with ``check_lam="final"`` the batch's last ``lam`` for all), appended to
    ``checks``; returns the best of them and ``best`` as ``(score, k, X_p, lam)``.
    ``Xc``'s rows are restored."""
    last = Xc[ctx.rows].copy()
    for k, Xp in candidates:
        Xc[ctx.rows] = Xp
        score = method.hypergrad.final(ctx, state, Xc, yc, lam)
        checks.append([k, score])
        if best is None or score > best[0]:
            best = (score, k, Xp, lam)
    Xc[ctx.rows] = last
    return best


def one_restart(ctx, method, X, y, lam0, n_poison, iters, learn_lam, alpha_lam, lam_bounds,
                callback, r):
    """Alg. 2 for batch ``ctx.b`` from one initDp draw: ``(Xc, yc, trace, lam_k, X0)``."""
    xp = ctx.xp
    Xc, yc = init_dp(ctx, X, y, n_poison) if ctx.b else (X.copy(), y.copy())
    # the clones before any step, in the order of the sorted rows (as Batch.poison_idx)
    X0 = Xc[ctx.rows[xp.argsort(ctx.rows)]].copy() if ctx.b else None
    lam_k = None if lam0 is None else xp.asarray(lam0)                       # [A3], float64
    states = (method.hypergrad.start(ctx),
              method.step.start(ctx, Xc[ctx.rows]) if ctx.b else None)
    outer, lams = [], []                      # kept on the device until the batch ends
    best, checks = None, []
    moves = bool(ctx.b) and getattr(method.step, "moves", True)   # flip's Hold: no X_p steps
    checked = method.keep_best and moves and method.check_every
    deferred = [] if checked and learn_lam and method.check_lam == "final" else None
    with _no_waiting(xp):
        for k in range(iters if (moves or learn_lam) else 1):
            Xp_k = Xc[ctx.rows].copy() if method.keep_best and moves else None
            if checked and k % method.check_every == 0 and deferred is not None:
                deferred.append((k, Xp_k))                 # scored at the last lam, below
            elif checked and k % method.check_every == 0:  # k = 0: initDp's points
                best = checked_at(ctx, method, states[0], Xc, yc, lam_k, [(k, Xp_k)],
                                  checks, best)
            value, lam_next = hyperiteration(ctx, method, states, Xc, yc, lam_k, learn_lam,
                                             alpha_lam, lam_bounds)
            outer.append(value)
            lams.append(lam_k)
            if Xp_k is not None and not checked and (best is None or
                                                     ctx.sign * float(value) > best[0]):
                best = (ctx.sign * float(value), k, Xp_k, lam_k)  # the iterate just measured
            lam_k = lam_next
            if callback is not None:               # asked for: a wait for the device
                callback(ctx.b, k, ctx.sign * float(value),
                         None if lam_k is None else to_numpy(lam_k))
    trace = {"outer": (ctx.sign * to_numpy(xp.stack(outer))).tolist(),    # one read each
             "lam": [None] * len(lams) if lam0 is None else to_numpy(xp.stack(lams)).tolist()}
    if deferred:                                    # every candidate at the batch's last lam
        best = checked_at(ctx, method, states[0], Xc, yc, lam_k, deferred, checks)
    if checks:
        trace["checks"] = checks                    # [k, objective] of the checked iterates
    if best is not None:
        final = method.hypergrad.final(ctx, states[0], Xc, yc, lam_k)
        if best[0] > final:                         # an earlier iterate was better
            Xc[ctx.rows], lam_k = best[2], best[3]
            final = best[0]
            trace["best"] = best[1]
            if checked and learn_lam:     # the attacker picks its points, not the defender's
                lam_k, trace["lam_relearned"] = relearn_lam(ctx, method, Xc, yc, lam0, iters,
                                                            alpha_lam, lam_bounds)
                final = method.hypergrad.final(ctx, states[0], Xc, yc, lam_k)
    else:
        final = method.hypergrad.final(ctx, states[0], Xc, yc, lam_k)
    trace["final"] = final
    trace["restart"] = r
    return Xc, yc, trace, lam_k, X0


def attack(obj, Xtr, ytr, Xval, yval, *, n_poison=40, n_batches=5, iters=None, T=DEFAULT_T,
           eta=DEFAULT_ETA, alpha=None, alpha_lam=0.2, lam=None, learn_lam=False,
           lam_bounds=(-10.0, 4.0), box=None, target=None, targeted=False,
           w_init=None, restarts=1, seed=0, memory="store", callback=None, start=None,
           victim="gd", method="alg2", progress=None, placement="replace", check_lam=None):
    """Run Alg. 2 for ``n_batches`` cumulative batches of ``n_poison`` points.

    Parameters
    ----------
    obj : Objective  the victim's training objective (its ``per_layer`` decides whether a
        learned ``lam`` is one scalar or one value per layer)
    Xtr, ytr, Xval, yval : clean training set ``(n, d)`` and trusted validation set ``(m, d)``
        (or :class:`~hvpoison.objective.Prepared` ``Xtr`` holding ``lam`` and ``Xval``, with
        ``ytr``, ``yval`` and ``lam`` None)
    n_poison, n_batches : points per batch; fractions are ``b * n_poison / n``, b = 0..n_batches
    victim : how the defender trains (:mod:`hvpoison.victims`): ``"gd"`` = ``GD(T, eta,
        w_init)``, the paper's (default), ``"exact"`` = ``Exact()`` (to optimality; LR with
        L2), or a victim object
    method : ``"alg2"`` (the paper's Alg. 2, default), ``"strong"`` (the strongest recipe
        measured for the victim and model), ``"flip"`` (initDp's points, not optimised),
        ``"all"``, or a :class:`hvpoison.methods.Method`
    iters : hyperiterations K per batch (None: the method's, 30 for alg2, 100 for strong, 40
        for the MLP's strong)
    T, eta : the GD victim's inner steps and step (Eq. 6); the defaults, 200 steps of 0.1,
        are those of :func:`hvpoison.evaluate` and :func:`hvpoison.train` too (one default
        victim; ``victim=batch.victim`` tests exactly this one); ``eta="auto"``: ``c / L`` from
        the Hessian on the clean data, over ``lam_bounds`` when ``learn_lam`` (resolved
        once; each Batch's ``trace["eta"]`` holds the step)
    alpha : the outer step for ``X_p`` (None: the method's): alg2's Frobenius length of the
        normalised step (1.0); strong's Adam step as a fraction of the box width (0.02)
    alpha_lam : the step for ``lam`` (per component; None = alpha)
    lam : fixed ``lam``, or the initial value (initL) when ``learn_lam``; None = no penalty
    learn_lam : learn ``lam`` on the validation set (Eq. 3), else keep it fixed
    lam_bounds : box ``Lam`` for ``lam``;  box : ``(low, high)`` feature box ``Phi``
        (default: the range of the training and validation data)
    target : None or ``(X_t, y_t)`` for Eq. 2;  targeted : minimise the loss on ``y_t``
    w_init : the GD victim's initW: "zeros" (LR default) or "random" (MLP default: a fresh
        draw at every hyperiteration)
    restarts : independent initDp draws per batch; the best (highest objective) is kept
    seed : makes the run reproducible;  memory : passed to :func:`rmd`
    callback : called as ``callback(batch, k, outer_value, lam)`` after each hyperiteration
    progress : None (silent), True (a line on stderr with the hyperiterations done, the
        time so far and an ETA, rewritten at most once a second; only when stderr is a
        terminal), or a callable ``progress(done, total, batch)`` called after each
        hyperiteration, ``done`` of ``total`` over all batches and restarts (a ``tqdm``
        bar's ``update`` fits: ``lambda d, t, b: bar.update(1)``)
    placement : ``"replace"`` (default, the paper's: each batch replaces ``n_poison`` clean
        rows) or ``"add"`` (the batches are appended after the ``n`` clean rows, which stay
        as given: batch ``b``'s set has ``n + b n_poison`` rows; ``n_poison * n_batches``
        may then exceed ``n``). The points start as label-flipped validation clones either way
    check_lam : the MLP's ``"strong"`` only, with a learned ``lam``: the ``lam`` its checked
        iterates are scored at, ``"final"`` (None: the default,
        :data:`hvpoison.methods.CHECK_LAM`) or ``"own"`` (the recipe before 2026-12-06; see
        :func:`hvpoison.methods.strong_mlp`)
    start : None, or ``(b0, X, y)``: the poisoned training set after batch ``b0`` of an
        earlier run with the same arguments (with ``"add"``: its ``n + b0 n_poison`` rows);
        the run goes on with batches ``b0+1 .. n_batches`` (only those are returned) and
        gives what the full run gives (each batch draws from its own seeded stream), so an
        interrupted experiment resumes

    ``method="all"`` runs every method of :data:`hvpoison.methods.METHODS` that applies to
    the victim (``alg2`` only against ``"gd"``), each its own cumulative chain, and returns
    per fraction the batch with the highest attacker objective (``trace["final"]``, the
    validation loss as the victim trains); ``Batch.method`` names the method that made it
    and ``trace["methods"]`` holds every method's objective. ``"strong"`` is the strongest
    recipe measured per victim and model, not the strongest in every setting: use
    ``"all"`` for the worst case.

    Returns
    -------
    list of :class:`Batch`, one per fraction (the first is the clean fraction 0).
    """
    args = dict(locals())                  # every argument as given (method="all" reruns)
    if isinstance(method, str) and method == "all":
        return _attack_all(args)
    run = _checked(args)
    X, y, b0 = run.ctx.data.X.copy(), run.ctx.data.y.copy(), -1
    if start is not None:
        b0, X, y = _checked_start(obj, run.ctx.data, start, run.n_batches,
                                  run.n_poison if run.placement == "add" else 0)
    callback = _with_progress(callback, progress, run.method, b0, run.n_batches,
                              run.restarts, run.learn_lam)
    batches = []
    for b in range(b0 + 1, run.n_batches + 1):
        batches.append(_one_batch(run, b, X, y, callback))
        X, y = batches[-1].X, batches[-1].y             # cumulative: the next batch's start
    return batches


@dataclass
class _Run:
    """One call's checked settings (:func:`_checked`): the context, the method, the sizes,
    the poisoned rows ``I`` in order, ``lam0`` (initL) and the defender's ``lam`` step."""

    ctx: Context
    method: object
    n: int                    # clean training rows
    n_poison: int
    n_batches: int
    placement: str
    rows: np.ndarray          # the rows I that batches 1..n_batches poison, in order
    lam0: object
    learn_lam: bool
    alpha_lam: float
    lam_bounds: tuple
    restarts: int
    seed: int


def _checked_sizes(a, n):
    """``(n_poison, n_batches, placement)`` checked against ``n`` clean rows."""
    n_poison = _checks.positive_int("n_poison", a["n_poison"])
    n_batches = a["n_batches"]
    if isinstance(n_batches, bool) or not isinstance(n_batches, (int, np.integer)) or \
            n_batches < 0:
        _checks.fail("n_batches", "a non-negative integer", repr(n_batches))
    placement = _placement(a["placement"])
    if placement == "replace" and n_poison * n_batches > n:
        _checks.fail("n_poison * n_batches", f"at most n = {n} rows to replace",
                     f"{n_poison} * {n_batches}")
    return n_poison, n_batches, placement


def _checked_method(a, victim, model):
    """The :class:`~hvpoison.methods.Method` asked for, checked against ``victim``, and
    the defender's ``alpha_lam``."""
    alpha = a["alpha"]
    if isinstance(a["method"], str) and a["method"] == "alg2" and alpha is not None:
        alpha = _checks.positive_float("alpha", alpha)
    method = as_method(a["method"], victim, a["iters"], alpha, a["memory"], model,
                       a["check_lam"])
    method.hypergrad.check(victim, a["obj"])
    alpha_lam = _alpha_lam(method.step) if a["alpha_lam"] is None else \
        _checks.positive_float("alpha_lam", a["alpha_lam"])
    return method, alpha_lam


def _checked_box(box, X, Xval):
    """The feature box ``Phi``: ``box`` checked, or the range of ``X`` and ``Xval``."""
    if box is None:
        box = (float(min(X.min(), Xval.min())), float(max(X.max(), Xval.max())))
    if not (len(box) == 2 and box[0] < box[1]):
        _checks.fail("box", "(low, high) with low < high", repr(box))
    return tuple(box)


def _checked(a):
    """:func:`attack`'s arguments ``a`` (a dict) checked once: a :class:`_Run`. The victim
    resolves its own settings (``eta="auto"``) and caps ``lam_bounds`` where it trains."""
    obj, lam, learn_lam = a["obj"], a["lam"], a["learn_lam"]
    data = obj.as_prepared(a["Xtr"], a["ytr"], lam, ("Xtr", "ytr"))    # validates once
    val = obj.as_prepared(a["Xval"], a["yval"], None, ("Xval", "yval"), data.dtype)
    n = data.X.shape[0]
    n_poison, n_batches, placement = _checked_sizes(a, n)
    lam_bounds = _lam_bounds(a["lam_bounds"])
    _checks.finite_exp("lam_bounds", [lam_bounds[1]], data.dtype)
    victim = as_victim(a["victim"], a["T"], a["eta"], a["w_init"]).resolved(
        obj, data, lam_bounds if learn_lam else None)
    method, alpha_lam = _checked_method(a, victim, obj.model)
    restarts = _checks.positive_int("restarts", a["restarts"])
    if learn_lam and data.lam is None:
        _checks.fail("lam", "an initial value when learn_lam=True", "None")
    if learn_lam:                             # the bounds the victim can train
        lam_bounds = victim.trainable(obj, data.X, data.y, lam_bounds)
    box = _checked_box(a["box"], data.X, val.X)
    target = a["target"]
    out = val if target is None else obj.prepare(*target, None, ("target[0]", "target[1]"),
                                                 data.dtype)
    ctx = Context(obj, victim, data, out, val, target is not None,
                  -1.0 if a["targeted"] else 1.0, box)
    lam0 = None if data.lam is None else np.array(to_numpy(data.lam), dtype=float)
    return _Run(ctx, method, n, n_poison, n_batches, placement,
                _poison_rows(placement, a["seed"], n, n_poison, n_batches), lam0, learn_lam,
                alpha_lam, lam_bounds, restarts, a["seed"])


def _one_batch(run, b, X, y, callback):
    """Batch ``b`` of the cumulative run from the poisoned set ``(X, y)`` of batch ``b - 1``:
    the best of ``restarts`` Alg. 2 runs (one at ``b = 0``, where only ``lam`` learns)."""
    ctx, n_p = run.ctx, run.n_poison
    ctx.b, ctx.rng = b, np.random.default_rng([run.seed, b])    # batch b's own stream
    ctx.rows = ctx.xp.asarray(run.rows[(b - 1) * n_p: b * n_p]) if b else None
    if b and run.placement == "add":              # the batch's places after the rest
        X, y = _grown(X, y, n_p)
    best = None
    for r in range(run.restarts if b else 1):
        result = one_restart(ctx, run.method, X, y, run.lam0, n_p, run.method.iters,
                             run.learn_lam, run.alpha_lam, run.lam_bounds, callback, r)
        if best is None or result[2]["final"] > best[2]["final"]:
            best = result
    X, y, trace, lam_k, X0 = best
    trace.update(ctx.victim.describe())           # GD: the step the victim trains with
    return Batch(fraction=b * n_p / run.n, X=X, y=y, poison_idx=np.sort(run.rows[: b * n_p]),
                 lam=ctx.as_lam(lam_k), trace=trace, X0=X0, victim=ctx.victim,
                 method=run.method.name)


def methods_for(victim) -> list:
    """The named methods that apply to ``victim`` (a name or object), in
    :data:`~hvpoison.methods.METHODS`' order: ``alg2`` differentiates gradient steps, so
    only against GD (each victim lists its own, ``victim.methods``)."""
    own = as_victim(victim).methods
    return [m for m in METHODS if m in own]


def _attack_all(kw):
    """``attack(..., method="all")``: each method's batches, the worst per fraction."""
    if kw["alpha"] is not None:
        _checks.fail("alpha", "None with method='all' (each method takes its own step)",
                     repr(kw["alpha"]))
    if kw["start"] is not None:
        _checks.fail("start", "None with method='all' (each method has its own chain)",
                     "a resumed run")
    runs = {m: attack(**{**kw, "method": m,                       # check_lam: strong's
                         "check_lam": kw["check_lam"] if m == "strong" else None})
            for m in methods_for(kw["victim"])}
    out = []
    for i, batches in enumerate(zip(*runs.values())):
        scores = {m: b.trace["final"] for m, b in zip(runs, batches)}
        worst = max(runs, key=lambda m: scores[m])          # first listed on ties
        b = batches[list(runs).index(worst)]
        b.trace["methods"] = scores
        out.append(b)
    return out


def _with_progress(callback, progress, method, b0, n_batches, restarts, learn_lam):
    """``callback`` extended with ``progress`` (see :func:`attack`): counts every
    hyperiteration of batches ``b0+1 .. n_batches``."""
    if progress is None or progress is False:
        return callback
    if progress is True:
        progress = _terminal_progress()
        if progress is None:
            return callback
    elif not callable(progress):
        _checks.fail("progress", "None, True or a callable progress(done, total, batch)",
                     _checks.short_repr(progress), TypeError)
    moves = getattr(method.step, "moves", True)
    iters = method.iters if learn_lam else 1         # one_restart's count at b = 0 ...
    per_batch = [iters if b == 0 else        # ... and with a step (flip's Hold: none)
                 (method.iters if moves or learn_lam else 1) * restarts
                 for b in range(b0 + 1, n_batches + 1)]
    total, done = sum(per_batch), [0]

    def both(b, k, value, lam):
        done[0] += 1
        progress(done[0], total, b)
        if callback is not None:
            callback(b, k, value, lam)
    return both


def _terminal_progress():
    """``progress(done, total, batch)`` writing one line to a terminal's stderr, at most
    once a second, with an ETA; None when stderr is not a terminal."""
    import sys
    import time

    if not sys.stderr.isatty():
        return None
    t0, last = time.perf_counter(), [0.0]

    def show(done, total, batch):
        now = time.perf_counter()
        if now - last[0] < 1.0 and done < total:
            return
        last[0] = now
        left = (now - t0) / done * (total - done)
        sys.stderr.write(f"\rhv.attack: batch {batch}, hyperiteration {done}/{total}, "
                         f"{now - t0:.0f} s so far, ETA {left:.0f} s\x1b[K"
                         + ("\n" if done == total else ""))
        sys.stderr.flush()
    return show


def _checked_start(obj, data, start, n_batches, added=0):
    """``start`` checked; ``added``: the rows each batch appends (``"add"``), else 0."""
    b0, X, y = start
    if isinstance(b0, bool) or not isinstance(b0, (int, np.integer)) or not 0 <= b0 <= n_batches:
        _checks.fail("start[0]", f"a batch index in [0, {n_batches}]", repr(b0))
    y = obj.prepare(X, y, None, ("start[1]", "start[2]"), data.dtype).y
    shape = (data.X.shape[0] + b0 * added, data.X.shape[1])
    if X.shape != shape:
        _checks.fail("start[1]", f"the poisoned training set of shape {shape}",
                     _checks.describe(X))
    return b0, X.copy(), y.copy()
