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
