"""The logistic output unit shared by every model: stable cross-entropy from logits.

With logit ``z`` and label ``y`` in {0, 1}, ``CE(y, sigma(z)) = softplus(z) - y z``
(never ``log(sigmoid(z))``, which loses everything for large ``|z|``).  Derivatives with
respect to ``z``: ``dCE/dz = sigma(z) - y`` (the *residual*) and
``d2CE/dz2 = sigma(z) (1 - sigma(z))`` (the *curvature*, which the R-operator needs).
"""
from __future__ import annotations

from scipy.special import expit as _expit


def softplus(xp, z):
    """``log(1 + exp(z))`` without overflow."""
    return xp.logaddexp(0.0, z)


def sigmoid(xp, z):
    """``1 / (1 + exp(-z))`` without overflow (SciPy's / cupyx's ``expit`` ufunc)."""
    if xp.__name__ == "numpy":
        return _expit(z)
    from cupyx.scipy.special import expit  # pragma: no cover - GPU only

    return expit(z)  # pragma: no cover


def mean_ce(xp, z, y):
    """Mean binary cross-entropy ``(1/n) sum_i softplus(z_i) - y_i z_i`` (paper: l(w; D))."""
    return (softplus(xp, z) - y * z).mean()


def bounded_ce(xp, z, y, delta):
    """The attacker's bounded cross-entropy and its residual, for logits ``z`` ``(n,)`` and
    labels ``y`` ``(n,)``: with ``q = sigma((2y - 1) z)`` the probability given to the true
    label, ``l = mean(-log((q + delta) / (1 + delta)))`` (at most ``log((1 + delta) /
    delta)`` per row; ``delta -> 0``: the cross-entropy). Its derivative in ``z_i``:
    ``-(2 y_i - 1) q_i (1 - q_i) / (q_i + delta) / n`` (``delta = 0``: ``sigma(z_i) - y_i``
    over ``n``). A row already misclassified with confidence stops contributing, so an
    outer loss built on it rewards errors on more rows rather than ever larger losses on a
    few (the MLP's ``strong``: :func:`hvpoison.methods.strong_mlp`). Returns ``(loss (0-d),
    residual (n,))``."""
    s = 2 * y - 1
    q = sigmoid(xp, s * z)
    loss = -xp.log((q + delta) / (1 + delta)).mean()
    return loss, -s * q * (1 - q) / (q + delta) / z.shape[0]
