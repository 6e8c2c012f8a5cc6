"""The parts of Alg. 2 a method is made of: a hypergradient (line [A5]) and an outer step
(line [A6]); :func:`hvpoison.attack` runs them for ``iters`` hyperiterations per batch.

Hypergradients belong to the victim whose training they differentiate
(:mod:`hvpoison.victims`, ``victim.hypergradient(...)``): ``RMD(memory)`` (Alg. 1 through
the GD victim's ``T`` steps from ``initW``, the paper's; ``warm=True``: ``rmd-warm``) and
``Implicit(damping)`` (Eq. 4 at the Exact victim's optimum ``w*``). This module keeps
Alg. 2's outer parts: the steps, the keep-best choice and the named recipes.

Outer steps on ``X_p`` (ascent, then the projection on the box ``Phi``):

``Normalised(alpha)``       ``X_p + alpha g / ||g||`` (Alg. 2 [A6]; ``per_point``: each
                            point's row normalised on its own)
``Adam(lr)``                Adam on ``g`` with step ``lr * (high - low)`` per coordinate
``LineSearch(alpha)``       backtracking along ``g / ||g||`` until the true objective (the
                            victim retrained) rises
(``decay`` on Normalised and Adam: the schedule ``step / (1 + decay k)``)

The defender's ``lam`` always takes Alg. 2's step [A7], ``lam - alpha_lam sign(dlam)``,
with ``dlam`` the exact (undamped) hypergradient of the validation loss: the defender learns
``lam`` on the validation set (Eq. 3) whatever the attacker does.

:func:`as_method` gives the named methods: ``"alg2"`` (RMD + Normalised, 30 iterations: the
paper's algorithm, unchanged), ``"flip"`` (initDp's label-flipped validation clones, not
optimised: the baseline every attack must beat) and ``"strong"``: against ``GD``, RMD +
Adam(0.02) for 100 iterations keeping the best iterate for LR, and for the MLP
:func:`strong_mlp` (float32 RMD + Alg. 2's normalised step for 40 iterations, every 4th
iterate from the flip points on scored as the victim trains over 6 fixed Xavier starts, the
best returned); against ``Exact``, Implicit(damping_per_batch=0.006) + Adam(0.02) for 100
iterations, returning the last iterate (bench/RESULTS.md: the measurements that chose
them). Against ``Exact``, keeping the iterate with the highest validation loss *lowered*
the test error it caused on 3 of 4 splits measured (MNIST seeds 0-2, Fashion-MNIST seed 0:
e.g. 0.137 against 0.166 at 20 %). The best validation loss there is the poison
over-fitting the validation set, as damping also shows.

On a GPU, ``alg2`` never waits for the device inside a batch; keeping the best iterate reads
each hyperiteration's objective, and the Exact victim's Newton reads norms, so those wait.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import _checks, ops
from .models.lr import LR
from .victims import RMD, Implicit

METHODS = ("alg2", "strong", "flip")


# -- outer steps on X_p ([A6]) ----------------------------------------------------------
@dataclass(frozen=True)
class Normalised:
    """``Pi_Phi(X_p + alpha_k g / ||g||)`` (Alg. 2 [A6]); ``per_point``: row by row; the
    schedule ``alpha_k = alpha / (1 + decay k)`` (``decay = 0``: Alg. 2's constant step)."""

    alpha: float = 1.0
    per_point: bool = False
    decay: float = 0.0

    def __post_init__(self):
        _checks.positive_float("alpha", self.alpha)
        if not isinstance(self.per_point, bool):
            _checks.fail("per_point", "True or False", repr(self.per_point), TypeError)
        _checks.nonnegative_float("decay", self.decay)

    def start(self, ctx, Xp):
        return {"k": 0}

    def __call__(self, ctx, st, Xp, g, value=None, objective=None):
        xp = ctx.xp
        alpha = self.alpha if not self.decay else self.alpha / (1 + self.decay * st["k"])
        st["k"] += 1
        if self.per_point:
            norm = xp.linalg.norm(g, axis=1, keepdims=True)
            return xp.clip(Xp + alpha * g / xp.where(norm > 0, norm, 1.0), *ctx.box)
        norm = xp.linalg.norm(g)                                       # g = 0: no step
        scale = (alpha / xp.where(norm > 0, norm, 1.0)).astype(ctx.dtype)
        return ops.impl("ascent_project", xp)(xp, Xp, g, scale, ctx.box[0], ctx.box[1])


@dataclass(frozen=True)
class LineSearch:
    """Backtracking on the true objective: try ``Pi_Phi(X_p + t g / ||g||)`` from the last
    accepted length ``t`` (``alpha`` at first) grown by ``grow``; halve ``t`` (``shrink``)
    until the attacker's objective, as the victim trains, rises, at most ``tries`` times
    (else no step, only the projection). Each try costs one training of the victim."""

    alpha: float = 1.0
    shrink: float = 0.5
    grow: float = 2.0
    tries: int = 6

    def __post_init__(self):
        _checks.positive_float("alpha", self.alpha)
        if isinstance(self.shrink, bool) or not isinstance(self.shrink, (int, float)) or \
                not 0 < self.shrink < 1:
            _checks.fail("shrink", "a number in (0, 1)", repr(self.shrink))
        if isinstance(self.grow, bool) or not isinstance(self.grow, (int, float)) or \
                not (np.isfinite(self.grow) and self.grow >= 1):
            _checks.fail("grow", "a finite number >= 1", repr(self.grow))
        _checks.positive_int("tries", self.tries)

    def start(self, ctx, Xp):
        return {"t": self.alpha / self.grow}

    def __call__(self, ctx, st, Xp, g, value=None, objective=None):
        xp = ctx.xp
        norm = float(xp.linalg.norm(g))
        if norm == 0 or objective is None:
            return xp.clip(Xp, *ctx.box)
        current = float(value)
        t = st["t"] * self.grow
        for _ in range(self.tries):
            trial = xp.clip(Xp + (t / norm) * g, *ctx.box)
            if objective(trial) > current:
                st["t"] = t
                return trial
            t *= self.shrink
        st["t"] = t
        return xp.clip(Xp, *ctx.box)         # no step (a clone outside the box: projected)


@dataclass(frozen=True)
class Adam:
    """Adam ascent on ``X_p`` (Kingma & Ba), step ``lr * (high - low) / (1 + decay k)`` per
    coordinate, then the box projection; the moments restart with every batch and restart."""

    lr: float = 0.02
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    decay: float = 0.0

    def __post_init__(self):
        _checks.positive_float("lr", self.lr)
        _checks.nonnegative_float("decay", self.decay)
        for name in ("beta1", "beta2"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
                _checks.fail(name, "a number in [0, 1)", repr(v))
        _checks.positive_float("eps", self.eps)

    def start(self, ctx, Xp):
        return {"m": ctx.xp.zeros_like(Xp), "v": ctx.xp.zeros_like(Xp), "t": 0}

    def __call__(self, ctx, st, Xp, g, value=None, objective=None):
        xp = ctx.xp
        st["t"] += 1
        st["m"] = self.beta1 * st["m"] + (1 - self.beta1) * g
        st["v"] = self.beta2 * st["v"] + (1 - self.beta2) * g * g
        mhat = st["m"] / (1 - self.beta1 ** st["t"])
        vhat = st["v"] / (1 - self.beta2 ** st["t"])
        step = self.lr * (ctx.box[1] - ctx.box[0]) / (1 + self.decay * (st["t"] - 1))
        return xp.clip(Xp + step * mhat / (xp.sqrt(vhat) + self.eps), *ctx.box)


@dataclass(frozen=True)
class Hold:
    """No step: ``X_p`` stays where initDp put it (the ``flip`` baseline: label-flipped
    validation clones, no optimisation). The defender's ``lam`` still learns ([A7])."""

    moves = False                        # Alg. 2 runs no X_p hyperiterations for it

    def start(self, ctx, Xp):
        return None

    def __call__(self, ctx, st, Xp, g, value=None, objective=None):
        return Xp


# -- methods ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Method:
    """A hypergradient, an outer step, ``iters`` hyperiterations per batch, and whether to
    return the best iterate seen (by the hypergradient's objective) or the last one.

    ``check_every > 0``: every such iterate is scored as the victim trains
    (``hypergrad.final``). ``check_lam``, where the defender learns ``lam``: the ``lam`` each
    checked iterate is scored at -- ``"own"``, the one it was reached with (``initL``'s
    weak defender for the first ones), or ``"final"``, the batch's last ``lam`` for every
    one (scored after the batch, the same defender for all candidates)."""

    hypergrad: object = field(default_factory=RMD)
    step: object = field(default_factory=Normalised)
    iters: int = 30
    keep_best: bool = False
    name: str = "custom"
    check_every: int = 0
    check_lam: str = "own"

    def __post_init__(self):
        if not (callable(self.hypergrad) and all(hasattr(self.hypergrad, a) for a in
                                                 ("check", "start", "final"))):
            _checks.fail("method.hypergrad", "RMD(...), Implicit(...) or another "
                         "victim's hypergradient (victim.hypergradient())", repr(self.hypergrad),
                         TypeError)
        if not isinstance(self.step, (Normalised, Adam, LineSearch, Hold)):
            _checks.fail("method.step", "Normalised(...), Adam(...), LineSearch(...) or "
                         "Hold()", repr(self.step), TypeError)
        _checks.positive_int("iters", self.iters)
        if not isinstance(self.keep_best, bool):
            _checks.fail("keep_best", "True or False", repr(self.keep_best), TypeError)
        if isinstance(self.check_every, bool) or not isinstance(self.check_every, int) or \
                self.check_every < 0 or (self.check_every and not self.keep_best):
            _checks.fail("check_every", "an integer >= 0 (> 0 only with keep_best=True)",
                         repr(self.check_every))
        if self.check_lam not in ("own", "final"):
            _checks.fail("check_lam", "'own' or 'final'", repr(self.check_lam))


def alg2(iters=None, alpha=None, memory="store"):
    """Alg. 2 as the paper writes it: RMD from ``initW``, normalised steps ``alpha`` (1),
    ``iters`` (30) hyperiterations, the last iterate."""
    return Method(RMD(memory), Normalised(1.0 if alpha is None else alpha),
                  30 if iters is None else iters, name="alg2")


def strong(victim, iters=None, alpha=None, memory="store", model=None, check_lam=None):
    """The strongest recipe measured for ``victim`` and ``model`` (``alpha``: Adam's ``lr``,
    0.02; for the MLP the normalised step's length, 1.0; ``check_lam``: the MLP's, see
    :func:`strong_mlp`)."""
    if victim.name == "exact":           # the last iterate: see the module docstring
        return Method(victim.hypergradient(damping_per_batch=0.006),
                      Adam(0.02 if alpha is None else alpha), 100 if iters is None else iters,
                      False, name="strong")
    if model is not None and not isinstance(model, LR):
        return strong_mlp(iters, alpha, memory,
                          check_lam=CHECK_LAM if check_lam is None else check_lam)
    return Method(victim.hypergradient(memory), Adam(0.02 if alpha is None else alpha),
                  100 if iters is None else iters, True, name="strong")


#: the MLP's strong: the lam its checked iterates are scored at, with a learned lam
#: (bench/RESULTS.md, 2026-12-06: "own" kept initDp's points in 4 of 5 batches)
CHECK_LAM = "final"


def strong_mlp(iters=None, alpha=None, memory="store", eval_starts=6, delta=0.0,
               check_lam=CHECK_LAM):
    """The MLP against the GD victim: Alg. 2's normalised step (``alpha``, 1.0; the
    experiments and ``hvpoison attack`` pass the task's, as for Alg. 2: 4 on CIFAR-10,
    :func:`hvpoison.experiments.protocol.attack_alpha`) for
    ``iters`` (40) hyperiterations, the hypergradient in float32, and every 4th iterate --
    initDp's flip points first -- scored as the victim trains (the validation loss, mean
    over ``eval_starts`` Xavier draws fixed for the batch); the best is returned. Why: the
    GD victim (eta 0.1) trains at the edge of stability on poisoned data, so one draw's
    validation loss is noisy and Alg. 2's last iterate can do less damage than its flip
    start (bench/RESULTS.md, 2026-12-05). With a learned ``lam``, when an earlier iterate
    wins, the defender's ``lam`` is learned again on the returned points
    (:func:`hvpoison.attack.relearn_lam`): the attacker chooses its points, never the
    defender's ``lam``. ``delta > 0``: the attacker's loss, differentiated and scored, is
    the bounded cross-entropy (:func:`hvpoison.logistic.bounded_ce`; measured in
    bench/RESULTS.md, 2026-12-06). ``check_lam`` (:class:`Method`), with a learned
    ``lam``: ``"final"`` (the default since 2026-12-06) scores every checked iterate at the
    batch's last ``lam``; ``"own"`` (before) each at the ``lam`` of its hyperiteration,
    which favours initDp's points and the first iterates, scored against ``initL``'s weakly
    regularised defender (bench/RESULTS.md, 2026-12-06: on MNIST it returned the flip
    points in 4 of 5 batches)."""
    return Method(RMD(memory, eval_starts=eval_starts, dtype="float32", delta=delta),
                  Normalised(1.0 if alpha is None else alpha), 40 if iters is None else iters,
                  keep_best=True, name="strong", check_every=4, check_lam=check_lam)


def flip(victim, iters=None, memory="store"):
    """The baseline every report shows beside an attack: initDp's label-flipped validation
    clones, not optimised (a ``Hold`` step); against ``victim``'s hypergradient only for
    the defender's learned ``lam`` ([A7], ``iters`` steps, 30 as alg2's)."""
    return Method(victim.hypergradient(memory), Hold(), 30 if iters is None else iters,
                  name="flip")


def as_method(method, victim, iters=None, alpha=None, memory="store", model=None,
              check_lam=None):
    """``"alg2"`` / ``"strong"`` (for ``victim`` and ``model``) or a :class:`Method`,
    checked against the victim; ``check_lam`` only for the MLP's ``"strong"``."""
    if check_lam is not None and not (method == "strong" and model is not None and
                                      not isinstance(model, LR)):
        _checks.fail("check_lam", "None unless method='strong' on the MLP (the lam its "
                     "checked iterates are scored at)", repr(check_lam))
    if isinstance(method, Method):
        if iters is not None or alpha is not None:
            _checks.fail("iters/alpha", "None with a Method object (set them in it)",
                         f"iters={iters!r}, alpha={alpha!r}")
        return method
    if method == "alg2":
        return alg2(iters, alpha, memory)
    if method == "strong":
        return strong(victim, iters, alpha, memory, model, check_lam)
    if method == "flip":
        if alpha is not None:
            _checks.fail("alpha", "None with method='flip' (it takes no step)", repr(alpha))
        return flip(victim, iters, memory)
    _checks.fail("method", f"one of {METHODS} or a Method", repr(method))


__all__ = ["METHODS", "CHECK_LAM", "Method", "Normalised", "Adam", "LineSearch", "Hold", "RMD",
           "Implicit", "alg2", "strong", "strong_mlp", "flip", "as_method"]
