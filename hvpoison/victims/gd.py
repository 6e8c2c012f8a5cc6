"""The GD victim: the paper's test-time training, ``T`` full-batch gradient steps (Eq. 6)
from ``initW``, and the hypergradient matched to it, Alg. 1 through the same steps.

==============================  ============================================================
``GD(T, eta, w_init)``          :meth:`GD.fit`: ``w_{t+1} = w_t - eta grad_w L`` for ``T``
                                steps from ``initW`` (zeros for LR, a seeded Xavier draw for
                                the MLP); its step size (``eta="auto"``: :meth:`GD.resolved`)
                                and the ``lam`` range where it trains (:meth:`GD.trainable`)
``RMD(memory, warm, ...)``      :meth:`GD.hypergradient`: Alg. 1 [A4]-[A5] through those
                                steps (:func:`hvpoison.hypergrad.rmd.alg1`); ``warm``
                                (``rmd-warm``) starts each inner run from the previous
                                hyperiteration's ``w_T`` (a continued training run, which acts
                                like damping ``mu ~ 1/(eta T)``)
==============================  ============================================================
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .. import _checks
from ..backend import get_array_module
from ..hypergrad.rmd import MEMORY, alg1, forward_steps, unroll, unroll_many
from ..logistic import bounded_ce
from ..models.lr import LR
from ..objective import Objective
from ..stepsize import AUTO, check_eta, curvature, resolve_eta

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
    methods = ("alg2", "strong", "flip")     # alg2 differentiates gradient steps: GD's only

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
        if self.eta == AUTO or not isinstance(obj.model, LR) or obj.penalty is None or \
                obj.penalty.kind != "l2":
            return None
        xp = get_array_module(X)
        L = curvature(Objective(obj.model, None), xp.zeros(obj.model.n_params, X.dtype), X, y,
                      None)
        room = margin * 2 / self.eta - L
        return math.log(room) if room > 0 else -math.inf

    def trainable(self, obj, X, y, bounds):
        """``bounds`` (``(low, high)`` of a learned ``lam``) capped at :meth:`stable_lam`, so
        a learned ``lam`` never climbs into divergence; an error naming ``eta`` when not
        even ``low`` trains."""
        hi = self.stable_lam(obj, X, y)
        if hi is None or hi >= bounds[1]:
            return bounds
        if hi <= bounds[0]:
            _checks.fail("eta", f"a step at which gradient descent trains some lam in "
                         f"lam_bounds {bounds} (here only lam < {hi:.2f})", repr(self.eta))
        return bounds[0], hi

    def resolved(self, obj, data, lam_bounds=None):
        """This victim with a number for ``eta``: ``eta="auto"`` resolved once on the
        Prepared ``data``, over ``lam_bounds`` (a learned ``lam``) or at ``data``'s fixed
        ``lam`` (:func:`hvpoison.stepsize.resolve_eta`): Alg. 1 differentiates a fixed step."""
        if self.eta != AUTO:
            return self
        return GD(self.T, resolve_eta(AUTO, obj, data, lam_bounds), self.w_init)

    def describe(self):
        """What a batch's trace records of this victim: the step it trains with."""
        return {"eta": self.eta}

    def hypergradient(self, memory="store", **options):
        """The hypergradient matched to this training: :class:`RMD` (Alg. 1 through the
        same ``T`` steps) with ``memory`` and ``options`` (its fields)."""
        return RMD(memory, **options)

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

    def fit_many(self, obj, X, y=None, lam=None, *, W0):
        """``W_T`` ``(K, P)``: :meth:`fit` from each row of ``W0`` ``(K, P)`` (``K``
        independent trainings on ``X`` ``(n, d)``, ``y`` ``(n,)`` or Prepared ``X``), taken
        in step together (:func:`~hvpoison.hypergrad.rmd.unroll_many`: for the MLP each
        step reads ``X`` once for all ``K`` starts); row ``j`` equals ``fit(obj, X, y, lam,
        w0=W0[j])`` to rounding, and a diverged start raises the
        :class:`~hvpoison.hypergrad.result.DivergenceError` :meth:`fit` raises (the first
        in row order). ``eta="auto"`` depends on each start's ``w_0``: one :meth:`fit` per
        start."""
        W0 = _checks.params_many("W0", W0, obj.model.n_params)
        data = obj.as_prepared(X, y, lam, dtype=W0.dtype)
        if self.eta == AUTO:
            return data.xp.stack([self.fit(obj, data, w0=w0) for w0 in W0])
        return unroll_many(obj, W0, data, T=self.T, eta=self.eta)




@dataclass(frozen=True)
class RMD:
    """Alg. 1 through the GD victim's training (``warm``: from the previous ``w_T``).

    For a victim with a random ``initW`` (the MLP's Xavier draw), ``starts`` draws per
    hyperiteration are averaged: a stochastic gradient of the *expected* validation loss
    over the victim's initialisation (what the attacker knows of it: the distribution, not
    the draw). ``eval_starts > 0``: :meth:`final`, the attacker's objective used to choose
    between iterates, is the mean over that many draws fixed for the batch (common random
    numbers: two candidates are compared on the same starts), else one fresh draw.
    ``dtype="float32"``: the hypergradient is computed in single precision (about 2.5x
    faster on the CPU; the points and ``lam`` stay in the data's dtype). ``delta > 0``: the
    attacker's outer loss (the hypergradient's and :meth:`final`'s) is the bounded
    cross-entropy :func:`hvpoison.logistic.bounded_ce` instead of the mean cross-entropy;
    the defender's ``dlam`` stays the validation cross-entropy's (Eq. 3)."""

    memory: str = "store"
    warm: bool = False
    starts: int = 1
    eval_starts: int = 0
    dtype: str | None = None
    horizon: int = 0
    eta_scale: float = 1.0
    delta: float = 0.0

    def __post_init__(self):
        if self.memory not in MEMORY:
            _checks.fail("memory", f"one of {MEMORY}", repr(self.memory))
        if not isinstance(self.warm, bool):
            _checks.fail("warm", "True or False", repr(self.warm), TypeError)
        _checks.positive_int("starts", self.starts)
        if isinstance(self.eval_starts, bool) or not isinstance(self.eval_starts, int) or \
                self.eval_starts < 0:
            _checks.fail("eval_starts", "an integer >= 0", repr(self.eval_starts))
        if self.dtype not in (None, "float32", "float64"):
            _checks.fail("dtype", "None, 'float32' or 'float64'", repr(self.dtype))
        if isinstance(self.horizon, bool) or not isinstance(self.horizon, int) or \
                self.horizon < 0:
            _checks.fail("horizon", "an integer >= 0 (0: all T steps)", repr(self.horizon))
        _checks.positive_float("eta_scale", self.eta_scale)
        _checks.nonnegative_float("delta", self.delta)

    def check(self, victim, obj):
        """An error naming ``victim`` unless it trains by gradient steps: Alg. 1 needs its
        ``T`` and (resolved) ``eta`` and its ``initW`` (``init_kind``, ``initial``)."""
        if not all(hasattr(victim, a) for a in ("T", "eta", "init_kind", "initial")):
            _checks.fail("victim", "GD(T, eta) for an RMD hypergradient (it differentiates "
                         "T gradient steps; use Implicit() against Exact())", repr(victim))

    def start(self, ctx):
        st = {"w": None, "ctx": _in_dtype(ctx, self.dtype)}
        if self.eval_starts:               # drawn once per batch (and restart)
            st["eval_w0"] = [ctx.init_w() for _ in range(self.eval_starts)]
        return st

    def __call__(self, ctx, st, Xc, yc, lam_k, need_dlam):
        """``(value, dXp, dlam)``: the outer loss, its gradient on the poisoning rows, and
        the defender's ``dlam`` on the validation set (None unless ``need_dlam``), each the
        mean over ``starts`` initialisations."""
        total = None
        for _ in range(self.starts):
            part = self._one(ctx, st, Xc, yc, lam_k, need_dlam)
            total = part if total is None else tuple(
                None if a is None else a + b for a, b in zip(total, part))
        if self.starts > 1:
            total = tuple(None if a is None else a / self.starts for a in total)
        value, dXp, dlam = total
        if st["ctx"] is not ctx:           # back to the attack's dtype
            dXp = None if dXp is None else dXp.astype(ctx.dtype)
            dlam = None if dlam is None else dlam.astype(ctx.dtype)
        return value, dXp, dlam

    def _one(self, ctx, st, Xc, yc, lam_k, need_dlam):
        """One initialisation's ``(value, dXp, dlam)`` (Alg. 1 [A4]-[A5])."""
        low = st["ctx"]
        w0 = ctx.init_w() if not (self.warm and st["w"] is not None) else st["w"]  # [A4]
        w0 = w0.astype(low.dtype, copy=False)
        data = low.prepared(Xc.astype(low.dtype, copy=False), yc.astype(low.dtype,
                                                                         copy=False), lam_k)
        T, eta = ctx.victim.T, ctx.victim.eta * self.eta_scale
        with np.errstate(over="ignore", invalid="ignore"):   # a diverging step: see final
            if self.horizon and self.horizon < T:            # truncated: the last steps only
                w0 = unroll_quiet(ctx.obj, w0, data, T - self.horizon, eta)
                T = self.horizon
            hg = alg1(ctx.obj, w0, data, ctx.rows, low.out, T, eta, self.memory,  # [A5]
                      self.delta)
        if self.warm:
            st["w"] = hg.info["w_T"]
        dlam = hg.dlam
        if need_dlam and (ctx.target or self.delta):  # the defender's: the validation CE
            with np.errstate(over="ignore", invalid="ignore"):
                dlam = alg1(ctx.obj, w0, data, None, low.val, ctx.victim.T, ctx.victim.eta,
                            self.memory).dlam
        return hg.value, hg.dXp, dlam

    def final(self, ctx, st, Xc, yc, lam_k):
        """The attacker's objective at ``Xc``, as the victim trains: from one fresh
        ``initW`` draw, or the mean over the batch's fixed ``eval_starts`` draws (a diverged
        training raises :class:`~hvpoison.hypergrad.result.DivergenceError` here). The
        fixed draws train together (:meth:`GD.fit_many`: one blocked computation that reads
        ``X`` once per step for all of them), each as :meth:`GD.fit` would."""
        low = st["ctx"]                    # in the hypergradient's precision
        starts = st.get("eval_w0") or [
            ctx.init_w() if not (self.warm and st["w"] is not None) else st["w"]]
        data = low.prepared(Xc.astype(low.dtype, copy=False),
                            yc.astype(low.dtype, copy=False), lam_k)
        starts = [w0.astype(low.dtype, copy=False) for w0 in starts]
        if len(starts) > 1 and hasattr(ctx.victim, "fit_many"):   # all starts in step,
            trained = ctx.victim.fit_many(ctx.obj, data, W0=ctx.xp.stack(starts))  # X read
        else:                                                      # once per step for all
            trained = [ctx.victim.fit(ctx.obj, data, w0=w0) for w0 in starts]
        losses = [self.outer_loss(ctx.obj, w, low.out) for w in trained]
        return ctx.sign * sum(losses) / len(losses)

    def outer_loss(self, obj, w, out):
        """The attacker's loss of ``w`` ``(P,)`` on the Prepared outer set ``out``: the mean
        cross-entropy, or with ``delta > 0`` the bounded one (a float)."""
        if not self.delta:
            return float(obj.val_loss(w, out))
        return float(bounded_ce(out.xp, obj.model.forward(w, out.X).z, out.y, self.delta)[0])


def unroll_quiet(obj, w0, data, T, eta):
    """``w_T`` after ``T`` steps of Eq. 6 on Prepared ``data``, unchecked (the attack's
    inner loop; a divergence shows in :meth:`RMD.final`)."""
    return forward_steps(obj, w0.copy(), data, 0, T, eta)


def _in_dtype(ctx, dtype):
    """``ctx`` itself, or a copy whose data and outer sets are in ``dtype`` (the RMD's
    compute precision; the poisoning rows and the rng are shared)."""
    if dtype is None or np.dtype(dtype) == ctx.dtype:
        return ctx
    low = np.dtype(dtype)
    prep = ctx.obj.prepare
    return dataclasses.replace(
        ctx, data=prep(ctx.data.X.astype(low), ctx.data.y.astype(low), ctx.data.lam),
        out=prep(ctx.out.X.astype(low), ctx.out.y.astype(low)),
        val=prep(ctx.val.X.astype(low), ctx.val.y.astype(low)))


__all__ = ["GD", "RMD", "DEFAULT_T", "DEFAULT_ETA"]
