"""Reverse-mode differentiation through T steps of gradient descent (Alg. 1, Eq. 6-9).

Inner problem, unrolled:   ``w_{t+1} = w_t - eta g(w_t)``, ``g = grad_w L(.; D_tr', lam)``.
Outer value:               ``l(w_T; D_val)`` (any set: a validation or a target set).

Alg. 1, with the line each piece of code implements::

    forward:  for t = 0 .. T-1:  w_{t+1} = w_t - eta g(w_t)          [F]
    init:     dw = grad_w l(w_T; D_val); dX_p = 0; dlam = 0             [I]
    reverse:  for t = T-1 down to 0:
                  dX_p -= eta M_X^T(w_t) dw                            [R1]
                  dlam -= eta M_lam^T(w_t) dw                          [R2]
                  dw   -= eta H(w_t) dw                                [R3]

[R1]-[R3] come from one R pass on step t's kept forward tape (``Point.hvp_mixed``), and the
mixed product is formed for the poisoning rows only.

Memory strategies (``memory=``):

``"store"``       keep every step's forward tape: exact, ``O(T (P + tape))`` memory, no
                  recomputation.
``"checkpoint"``  keep ``w_t`` every ``c ~ sqrt(T)`` steps; on the way back recompute one
                  segment's tapes at a time: exact (same arithmetic), ``O(sqrt(T))`` states,
                  about one extra forward pass.
``"reverse"``     keep only ``w_T`` and rebuild ``w_t = w_{t+1} + eta g(w_{t+1})`` on the
                  way back (the back-gradient of Muñoz-González et al., 2017): ``O(P)``
                  memory, approximate, since ``g(w_{t+1}) != g(w_t)``;
                  ``info["w0_error"]`` reports ``||w_0' - w_0|| / ||w_0||`` of the rebuilt
                  start as a measure of its drift.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _checks
from ..backend import get_array_module
from ..logistic import bounded_ce
from ..stepsize import curvature, resolve_eta
from .result import DivergenceError, Hypergrad, warn

MEMORY = ("store", "checkpoint", "reverse")


def check_inputs(obj, w0, Xtr, ytr, poison_idx, Xval, yval, lam, T, eta):
    """Validate the arguments of :func:`rmd` / :func:`~hvpoison.hypergrad.fmd.fmd` once,
    with no forward pass; returns ``(data, rows, val, T, eta)``: the :class:`Prepared`
    training and validation data (``Xtr`` / ``Xval`` may already be Prepared), the
    poisoning rows as an ``xp`` index array (or None), ``T`` and ``eta``."""
    _checks.params("w0", w0, obj.model.n_params)
    data = obj.as_prepared(Xtr, ytr, lam, ("Xtr", "ytr"), w0.dtype)
    rows = _checks.rows("poison_idx", poison_idx, data.X.shape[0], data.xp)
    val = obj.as_prepared(Xval, yval, None, ("Xval", "yval"), w0.dtype)
    T = _checks.positive_int("T", T)
    eta = _checks.positive_float("eta", eta)
    return data, rows, val, T, eta


def unroll(obj, w0, X, y=None, lam=None, T=None, eta=None, keep=None):
    """``w_T`` ``(P,)`` after T steps of Eq. 6 from ``w0`` ``(P,)`` on ``X`` ``(n, d)``,
    ``y`` ``(n,)`` (or :class:`~hvpoison.objective.Prepared` ``X``) (Alg. 1 line [F]);
    ``eta="auto"``: ``c / L`` from the Hessian at this ``lam`` and ``w0``
    (:func:`hvpoison.stepsize.resolve_eta`).

    ``keep(t, point)`` is called with every step's :class:`~hvpoison.objective.Point`
    (for Alg. 1 to store); each stays the point at its own ``w_t``.  Returns ``w_T`` (a new
    array).
    """
    _checks.params("w0", w0, obj.model.n_params)
    data = obj.as_prepared(X, y, lam, dtype=w0.dtype)
    T = _checks.positive_int("T", T)
    eta = resolve_eta(eta, obj, data, w0=w0)
    with np.errstate(over="ignore", invalid="ignore"):    # divergence is reported below
        w_T = _forward(obj, w0.copy(), data, 0, T, eta, keep)
    check_diverged(obj, w0, w_T, data, T, eta)
    return w_T


def unroll_many(obj, W0, X, y=None, lam=None, T=None, eta=None):
    """``W_T`` ``(K, P)``: ``K`` independent runs of Eq. 6 (Alg. 1 line [F]), one from each
    row of ``W0`` ``(K, P)``, on the same ``X`` ``(n, d)``, ``y`` ``(n,)`` (or
    :class:`~hvpoison.objective.Prepared` ``X``), taken in step together: ``W_{t+1} = W_t -
    eta G(W_t)`` with row ``j`` of ``G`` start ``j``'s gradient
    (:meth:`~hvpoison.objective.Objective.grad_many`: for the MLP one blocked pass that
    reads ``X`` once for all ``K``). Row ``j`` equals :func:`unroll` from ``W0[j]`` to
    rounding, and is checked as :func:`unroll` checks its ``w_T`` (:func:`check_diverged`,
    in row order: the first diverged start raises its :class:`DivergenceError`). ``eta``: a
    positive number (``"auto"`` depends on each start: :func:`unroll` per start)."""
    W0 = _checks.params_many("W0", W0, obj.model.n_params)
    data = obj.as_prepared(X, y, lam, dtype=W0.dtype)
    T = _checks.positive_int("T", T)
    eta = _checks.positive_float("eta", eta)
    W, G = W0.copy(), data.xp.empty_like(W0)
    with np.errstate(over="ignore", invalid="ignore"):    # divergence is reported below
        for _ in range(T):
            obj.grad_many(W, data, out=G)                 # every start's g, X read once
            W -= eta * G                                  # [F] for every start, in place
    for j in range(W.shape[0]):
        check_diverged(obj, W0[j], W[j], data, T, eta)
    return W


EXPLODED = 1e8      # |w_T| beyond this (and beyond 1e8 |w_0|) is divergence, not learning


def check_diverged(obj, w0, w_T, data, T, eta):
    """Raise :class:`DivergenceError` when ``w_T`` ``(P,)`` is not finite or exploded,
    naming the step size, ``lam`` and ``T``, with the curvature bound ``2 / L`` at ``w0``
    on the :class:`~hvpoison.objective.Prepared` ``data`` (``L``:
    :func:`hvpoison.stepsize.curvature`, Lanczos on ``H v``) the step must stay below."""
    xp = get_array_module(w_T)
    with np.errstate(over="ignore", invalid="ignore"):
        norm = float(xp.linalg.norm(w_T))
    if math.isfinite(norm) and norm <= EXPLODED * max(1.0, float(xp.linalg.norm(w0))):
        return
    try:
        L = curvature(obj, w0, data)
    except (RuntimeError, ValueError):            # Lanczos failed: the message goes without L
        L = 0.0
    bound = f"2 / L = {2 / L:.3g} (L ~ {L:.3g}, the largest curvature at w_0)" if L > 0 \
        else "2 / L"
    raise DivergenceError(
        f"gradient descent diverged: |w_T| = {norm:.3g} after T = {T} steps of eta = {eta:g} "
        f"with lam = {data.lam_text()}; eta must stay below {bound}: lower eta or lam")


def _forward(obj, w, data, t0, t1, eta, keep=None):
    """Steps ``t0 .. t1-1`` of [F] from ``w = w_{t0}`` (updated in place) on Prepared
    ``data``; each step's point goes to ``keep(t, point)`` (a point owns its copy of
    ``w_t``, so it stays valid).  Returns ``w_{t1}``."""
    g = data.xp.empty_like(w)
    for t in range(t0, t1):
        point = obj.linearize(w, data, grad_out=g)               # the forward pass and g
        if keep is not None:
            keep(t, point)
        w -= eta * g                                             # [F], in place
    return w


def forward_steps(obj, w, data, t0, t1, eta, keep=None):
    """Steps ``t0 .. t1-1`` of [F] from ``w`` (updated in place) on Prepared ``data``,
    unchecked: the public name of the loop the attack's inner training shares with Alg. 1.
    Returns ``w_{t1}``."""
    return _forward(obj, w, data, t0, t1, eta, keep)


def _reverse_step(point, dw, rows, eta, dXp, dlam, hv_buf):
    """[R1]-[R3] at one step, from one R pass on the kept tape (updates in place)."""
    Hv, MX, Ml = point.hvp_mixed(dw, rows=rows, out=hv_buf, with_x=rows is not None)
    if dXp is not None:
        MX *= eta                                                # in place: no n_p x d temporary
        dXp -= MX                                                # [R1]
    if dlam is not None:
        dlam -= eta * Ml                                         # [R2]
    Hv *= eta
    dw -= Hv                                                     # [R3]


def rmd(obj, w0, Xtr, ytr, poison_idx, Xval, yval, lam, T, eta, memory="store", delta=0.0):
    """Hypergradient of ``l(w_T; D_val)`` by reverse-mode differentiation (Alg. 1).

    Parameters
    ----------
    obj : Objective  the inner training objective ``L(w; D_tr', lam)``
    w0 : ``(P,)``  initial parameters (``initW`` of Alg. 2)
    Xtr, ytr : ``(n, d)``, ``(n,)``  poisoned training set ``D_tr'``
    poison_idx : ``(n_p,)`` ints or None  rows of ``Xtr`` holding ``X_p``
    Xval, yval : ``(m, d)``, ``(m,)``  the set the outer loss is measured on
    lam : None, scalar or ``(n_lam,)``;  T : int;  eta : float  (Eq. 6)
    memory : "store" | "checkpoint" | "reverse"  (see the module docstring)
    delta : float >= 0  the outer loss: the mean cross-entropy (0) or the bounded
        cross-entropy :func:`hvpoison.logistic.bounded_ce` with this ``delta``

    Raises :class:`DivergenceError` (naming ``T``, ``eta``, ``lam`` and the bound ``2 / L``)
    when the steps diverge, as :func:`unroll` and :func:`hvpoison.train` do: never a
    2e55 or NaN hypergradient in silence.

    Returns
    -------
    Hypergrad: ``dXp`` ``(n_p, d)`` (None without ``poison_idx``), ``dlam`` in the shape
    of ``lam`` (None without), ``value = l(w_T; D_val)``, and ``info`` with ``w_T``,
    counts of gradients and HVPs, and the largest number of stored states.
    """
    if memory not in MEMORY:
        _checks.fail("memory", f"one of {MEMORY}", repr(memory))
    _checks.nonnegative_float("delta", delta)
    data, rows, val, T, eta = check_inputs(obj, w0, Xtr, ytr, poison_idx, Xval, yval, lam, T,
                                           eta)
    with np.errstate(over="ignore", invalid="ignore"):    # divergence is reported below
        hg = alg1(obj, w0, data, rows, val, T, eta, memory, delta)
    hg.value = float(hg.value)        # the one wait for the device, after the reverse pass
    check_hypergrad(obj, w0, hg, data, T, eta)
    return hg


def check_hypergrad(obj, w0, hg, data, T, eta):
    """Raise :class:`DivergenceError` (as :func:`unroll` does) when the forward pass
    diverged (``info["w_T"]`` not finite or exploded: :func:`check_diverged`) or the
    hypergradient came back non-finite: never an exploded or NaN hypergradient in silence
    (:func:`rmd`, :func:`~hvpoison.hypergrad.fmd.fmd`)."""
    check_diverged(obj, w0, hg.info["w_T"], data, T, eta)
    xp = data.xp
    for name, a in (("value", hg.value), ("dXp", hg.dXp), ("dlam", hg.dlam)):
        if a is not None and not bool(xp.isfinite(xp.asarray(a)).all()):
            raise DivergenceError(
                f"the hypergradient's {name} is not finite after T = {T} steps of eta = "
                f"{eta:g} with lam = {data.lam_text()}: the reverse pass diverged; lower eta "
                "or lam")


def outer_bounded(obj, w, val, delta):
    """``(l, grad_w l)`` of the bounded cross-entropy (:func:`hvpoison.logistic.bounded_ce`)
    on the Prepared outer set ``val`` at ``w`` ``(P,)``: Alg. 1's [I] for ``delta > 0``."""
    tape = obj.model.forward(w, val.X)
    value, dz = bounded_ce(val.xp, tape.z, val.y, delta)
    dw = val.xp.empty_like(w)
    obj.model.backward(w, tape, dz, dw)
    return value, dw


def alg1(obj, w0, data, rows, val, T, eta, memory, delta=0.0):
    """Alg. 1 on inputs validated by the caller (:func:`check_inputs`; the attack's inner
    loop, which checks once per run, calls it directly): ``data`` and ``val`` the
    :class:`~hvpoison.objective.Prepared` training and outer sets, ``rows`` an ``xp`` index
    array (or None). Nothing here waits for the device: ``value`` comes back as a 0-d
    array, so Alg. 2 (:func:`hvpoison.attack`) queues hyperiteration after hyperiteration
    on a GPU. (``memory="reverse"`` is the exception: its drift check reads two norms.)
    ``delta > 0``: the outer loss is the bounded cross-entropy
    (:func:`hvpoison.logistic.bounded_ce`) instead of the mean cross-entropy.
    """
    xp = data.xp
    P = w0.shape[0]
    info = {"memory": memory, "T": T, "grads": 0, "hvps": T, "stored_states": 0}

    def outer(w_T):                                              # [I]
        if delta:
            return outer_bounded(obj, w_T, val, delta)
        pt = obj.linearize(w_T, val)
        return pt.loss(), pt.grad()                              # loss: a 0-d array

    dXp = None if rows is None else xp.zeros((rows.shape[0], data.X.shape[1]), dtype=w0.dtype)
    dlam = None if data.e is None else xp.zeros(data.lam_shape, dtype=w0.dtype)
    hv_buf = xp.empty_like(w0)

    if memory == "store":
        tapes = [None] * T
        w_T = _forward(obj, w0.copy(), data, 0, T, eta, tapes.__setitem__)
        value, dw = outer(w_T)
        for t in range(T - 1, -1, -1):
            _reverse_step(tapes[t], dw, rows, eta, dXp, dlam, hv_buf)
            tapes[t] = None                                      # free as we go
        info.update(grads=T, stored_states=T)

    elif memory == "checkpoint":
        c = math.isqrt(T - 1) + 1                                # ceil(sqrt(T)) steps per segment
        starts = list(range(0, T, c))
        ckpt = xp.empty((len(starts), P), dtype=w0.dtype)
        w = w0.copy()
        for i, s in enumerate(starts):                           # forward, keeping w_s only
            ckpt[i] = w
            w = _forward(obj, w, data, s, min(s + c, T), eta)
        value, dw = outer(w)
        peak = 0
        for i in range(len(starts) - 1, -1, -1):                 # reverse, one segment at a time
            s, end = starts[i], min(starts[i] + c, T)
            tapes = {}
            _forward(obj, ckpt[i].copy(), data, s, end, eta, tapes.__setitem__)
            peak = max(peak, len(starts) + len(tapes))
            for t in range(end - 1, s - 1, -1):
                _reverse_step(tapes.pop(t), dw, rows, eta, dXp, dlam, hv_buf)
        info.update(grads=2 * T, stored_states=peak, segment=c, checkpoints=len(starts))

    else:  # "reverse": back-gradient, O(P) memory
        w = _forward(obj, w0.copy(), data, 0, T, eta)
        value, dw = outer(w)
        w_T, g = w.copy(), xp.empty_like(w)
        obj.linearize(w, data, grad_out=g)
        with np.errstate(over="ignore", invalid="ignore"):       # divergence is reported below
            for t in range(T - 1, -1, -1):
                w = w + eta * g                                  # w_t ~ w_{t+1} + eta g(w_{t+1})
                point = obj.linearize(w, data, grad_out=g)       # one forward serves the R
                _reverse_step(point, dw, rows, eta, dXp, dlam, hv_buf)  # pass and the next g
        norm0 = float(xp.linalg.norm(w0))
        drift = float(xp.linalg.norm(w - w0))
        info.update(grads=2 * T + 1, stored_states=1,
                    w0_error=drift / norm0 if norm0 > 0 else drift)
        if not math.isfinite(drift) or not bool(xp.isfinite(dw).all()):
            warn("memory='reverse': rebuilding w_t backwards diverged (reversing gradient "
                 "descent amplifies round-off and the one-step approximation); use "
                 "'checkpoint' for an exact result in O(sqrt(T)) memory")

    info["w_T"] = w_T if memory != "checkpoint" else w
    return Hypergrad(dXp=dXp, dlam=dlam, value=value, info=info)
