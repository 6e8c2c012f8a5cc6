"""How the defender trains: part of the threat model, one file per victim.

A *victim* turns a (possibly poisoned) training set into parameters ``w`` and owns the
hypergradient matched to that training: the attack must differentiate through the training
the victim actually does, and the evaluation must train the same way (points tuned for an
early-stopped model barely hurt a converged one, and the reverse).

============================  ==============================================================
``GD(T, eta, w_init)``        :mod:`.gd`: the paper's test-time training, ``T`` steps of
                              Eq. 6 from ``initW``; hypergradient :class:`RMD` (Alg. 1)
``Exact(tol, maxiter)``       :mod:`.exact`: trained to optimality by Newton's method
                              (:mod:`.newton`); hypergradient :class:`Implicit` (Eq. 4)
============================  ==============================================================

What :func:`hvpoison.attack` asks of a victim (it never tests a victim's type):

- ``fit(obj, X, y, lam, *, seed, w0)``: ``w`` ``(P,)``;
- ``hypergradient(memory, **options)``: the matched hypergradient, an object with
  ``check(victim, obj)``, ``start(ctx)``, ``__call__(ctx, st, Xc, yc, lam_k, need_dlam) ->
  (value, dXp, dlam)`` and ``final(ctx, st, Xc, yc, lam_k)`` (:mod:`hvpoison.methods`);
- ``resolved(obj, data, lam_bounds)``: itself with every data-dependent setting fixed
  (GD's ``eta="auto"``); ``trainable(obj, X, y, bounds)``: the ``lam`` range it trains;
- ``init_kind(obj)`` / ``initial(obj, seed, like)``: ``initW``; ``describe()``: what a
  batch's trace records; ``methods``: the named methods that apply; ``name``.

A new victim (minibatch SGD, early stopping) is one more module with these names.
:func:`as_victim` turns the names ``"gd"`` / ``"exact"`` into objects.
"""
from __future__ import annotations

from .. import _checks
from .exact import Exact, Implicit
from .gd import DEFAULT_ETA, DEFAULT_T, GD, RMD
from .newton import Newton

VICTIMS = ("gd", "exact")
_PROTOCOL = ("fit", "hypergradient", "resolved", "trainable", "describe", "methods")


def as_victim(victim, T=DEFAULT_T, eta=DEFAULT_ETA, w_init=None):
    """``"gd"`` -> ``GD(T, eta, w_init)``, ``"exact"`` -> ``Exact()``; victim objects (any
    with ``fit`` and ``hypergradient``: see the module docstring) pass."""
    if not isinstance(victim, str) and all(hasattr(victim, a) for a in _PROTOCOL):
        return victim
    if victim == "gd":
        return GD(T, eta, w_init)
    if victim == "exact":
        return Exact()
    _checks.fail("victim", f"one of {VICTIMS} or a victim object (GD, Exact)", repr(victim))


__all__ = ["GD", "Exact", "RMD", "Implicit", "Newton", "as_victim", "VICTIMS", "DEFAULT_T",
           "DEFAULT_ETA"]
