"""The result type shared by every hypergradient method (implicit, RMD, FMD)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any


class ConvergenceWarning(UserWarning):
    """A solver stopped before its tolerance (training for Eq. 4, or its linear solve): the
    hypergradient may be inaccurate; carries no array (shape: none)."""


class DivergenceError(ArithmeticError):
    """Gradient descent (Eq. 6) diverged: ``w_T`` is not finite or exploded (shape: none);
    the message names ``T``, ``eta`` and ``lam`` and the stable step bound."""


def warn(msg):
    warnings.warn(msg, ConvergenceWarning, stacklevel=3)


@dataclass
class Hypergrad:
    """Derivatives of the outer loss ``l(w(X_p, lam); D_val)`` (Eq. 4 or Alg. 1): ``dXp``
    ``(n_p, d)``, ``dlam`` in the shape of ``lam``, ``value`` a scalar.

    Attributes
    ----------
    dXp : array ``(n_p, d)`` or None
        Gradient with respect to the poisoning rows ``X_p = Xtr[poison_idx]``.
    dlam : array in the shape of ``lam`` (``()`` for a scalar) or None
        Gradient with respect to the log-scale hyperparameters; None when ``lam`` is None.
    value : float
        The outer loss at the inner solution (``w*`` or ``w_T``).
    info : dict
        Method-specific diagnostics (iterations, residuals, counts of products).
    """

    dXp: Any
    dlam: Any
    value: float
    info: dict = field(default_factory=dict)
