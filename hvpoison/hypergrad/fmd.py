"""Forward-mode differentiation of the unrolled problem with respect to ``lam``.

Propagates ``Z_t = d w_t / d lam`` (``P x G``, one column per penalty group) alongside the
inner loop (Eq. 6):

    ``Z_0 = 0``;   ``Z_{t+1} = Z_t - eta (H(w_t) Z_t + M_lam(w_t))``;
    ``grad_lam l(w_T) = Z_T^T grad_w l(w_T; D_val)``

One HVP per hyperparameter per step: practical for the few ``lam`` of this problem, and an
independent check of Alg. 1's ``dlam`` (they agree to round-off).
"""
from __future__ import annotations

import numpy as np

from .result import Hypergrad
from .rmd import check_hypergrad, check_inputs


def fmd(obj, w0, Xtr, ytr, poison_idx, Xval, yval, lam, T, eta):
    """``d l(w_T; D_val) / d lam`` by forward accumulation through Eq. 6 (the forward-mode
    counterpart of Alg. 1 [R2]); same arguments and shapes as :func:`rmd`.

    Raises :class:`~hvpoison.hypergrad.result.DivergenceError` as :func:`rmd` and
    :func:`hvpoison.train` do when a step diverges.

    Returns Hypergrad with ``dXp=None`` (forward mode over ``n_p d`` inputs would cost
    ``n_p d`` HVPs per step), ``dlam`` in the shape of ``lam`` (None without a penalty),
    ``value = l(w_T; D_val)``, and ``info`` with counts of gradients and HVPs.
    """
    data, _, val, T, eta = check_inputs(obj, w0, Xtr, ytr, poison_idx, Xval, yval, lam, T, eta)
    xp, e = data.xp, data.e
    w = w0.copy()
    G = 0 if e is None else e.shape[0]
    Z = xp.zeros((w.shape[0], G), dtype=w.dtype)
    g = xp.empty_like(w)
    with np.errstate(over="ignore", invalid="ignore"):    # divergence is reported below
        for _ in range(T):
            point = obj.linearize(w, data, grad_out=g)       # the forward pass and g
            if G:
                HZ = point.hvp_block(Z)                      # H Z, one blocked pass
                Z -= eta * (HZ + obj.penalty.dgrad_dlam(xp, w, e))
            w -= eta * g
        out = obj.linearize(w, val)
        dlam = None if e is None else obj.reduce_lam(Z.T @ out.grad(), data.lam_shape)
        value = float(out.loss())
    hg = Hypergrad(dXp=None, dlam=dlam, value=value,
                   info={"T": T, "grads": T, "hvps": T * G, "w_T": w})
    check_hypergrad(obj, w0, hg, data, T, eta)
    return hg
