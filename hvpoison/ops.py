"""The fused element-wise and reduction steps of the engine, as readable array-module code,
and the dispatch that may replace each by a CUDA kernel of the same signature.

Every function here is the *reference*: plain ``xp`` code (numpy or cupy) that the tests
hold the kernels to. :func:`impl` returns, while kernels are enabled, the CUDA kernel
(``kernels/*.cu``, :mod:`hvpoison.kernels`) for cupy arrays and the numba twin
(:mod:`hvpoison.kernels.cpu`) for numpy arrays when numba is installed; the reference
otherwise. ``HVPOISON_KERNELS=0`` or ``with hvpoison.kernels.use_kernels(False)`` switches
both off.
"""
from __future__ import annotations

import functools

import numpy as np

from .models._logistic import sigmoid, softplus


def sigmoid_ce(xp, z, y, with_loss=True):
    """Mean cross-entropy of the logits ``z`` ``(n,)`` against ``y`` ``(n,)`` and its first
    two derivatives in ``z`` (Sect. III's loss; the residual and curvature of Eq. 4 / Alg. 1).

    Returns ``(loss, residual, curv)``: ``loss = mean(softplus(z) - y z)`` (a 0-d array; None
    when not ``with_loss``: Alg. 1's steps never need it, and on the CPU it is a separate
    pass), ``residual = (sigma(z) - y) / n`` and ``curv = sigma(z) (1 - sigma(z)) / n``,
    both ``(n,)``. The kernel computes the loss in the same pass either way.
    """
    n = z.shape[0]
    p = sigmoid(xp, z)
    loss = (softplus(xp, z) - y * z).mean() if with_loss else None
    return loss, (p - y) / n, p * (1 - p) / n


def bias_leaky_relu(xp, Z, b, slope):
    """MLP line M1 for one hidden layer: ``Z += b`` in place (``Z`` ``(n, m)``, ``b``
    ``(m,)``), ``D = phi'(Z)`` (1 or ``slope``) and ``A = Z * D``; returns ``(D, A)``."""
    Z += b
    D = xp.where(Z > 0, 1.0, slope).astype(Z.dtype)
    return D, Z * D


def ascent_project(xp, Xp, g, scale, lo, hi):
    """Alg. 2 line [A6]: ``Xp = clip(Xp + scale g, lo, hi)`` in place (``(n_p, d)`` each,
    ``scale = alpha / ||g||`` a float or a 0-d array); returns ``Xp``."""
    Xp += scale * g
    return xp.clip(Xp, lo, hi, out=Xp)


REFERENCE = {"sigmoid_ce": sigmoid_ce, "bias_leaky_relu": bias_leaky_relu,
             "ascent_project": ascent_project}


@functools.lru_cache(maxsize=None)
def _kernels():
    try:
        from . import kernels
    except ImportError:          # a source tree run without installing: references only
        return None
    return kernels


def impl(name, xp):
    """The function to run for ``name`` on arrays of module ``xp``: a CUDA kernel (cupy) or
    a numba twin (numpy, when numba imports) while kernels are enabled, else the reference."""
    _k = _kernels()
    if _k is None or not _k.enabled():
        return REFERENCE[name]
    if xp is not np:
        return getattr(_k, name)  # pragma: no cover - GPU only
    twins = _k.cpu_twins()
    return twins.get(name, REFERENCE[name])
