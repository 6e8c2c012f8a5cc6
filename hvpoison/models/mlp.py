"""Multilayer perceptron: Leaky-ReLU hidden layers and one sigmoid output unit.

Notation for ``L`` layers: ``a_0 = X``, ``Z_k = a_{k-1} W_k + b_k``, ``a_k = phi(Z_k)``
for ``k < L`` (``phi`` = Leaky ReLU with slope ``slope``), logit ``z = Z_L[:, 0]``.
With output seed ``s = dz`` (``n x 1``) and ``D_k = phi'(Z_k)`` (0/1 or slope/1 mask):

1. backward:   ``delta_L = s``; ``grad_W_k = a_{k-1}^T delta_k``, ``grad_b_k = 1^T delta_k``,
               ``delta_{k-1} = (delta_k W_k^T) * D_{k-1}``;        ``grad_X = delta_1 W_1^T``
2. R-forward:  ``R a_0 = 0``; ``R Z_k = R a_{k-1} W_k + a_{k-1} V_k + v_{b,k}``,
               ``R a_k = D_k * R Z_k``                 (``phi'' = 0`` away from the kink)
3. R-backward: ``R delta_L = curv * R z``;
               ``R grad_W_k = R a_{k-1}^T delta_k + a_{k-1}^T R delta_k``,
               ``R grad_b_k = 1^T R delta_k``,
               ``R delta_{k-1} = (R delta_k W_k^T + delta_k V_k^T) * D_{k-1}``
4. mixed:      ``R grad_X = R delta_1 W_1^T + delta_1 V_1^T`` (only for the poisoning rows)

Each R pass costs about one forward plus one backward, so ``H v`` is about two
gradients given the shared forward tape.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from .. import _checks
from .. import ops
from ..backend import get_array_module
from .base import Model


class MLP(Model):
    """Fully connected net ``sizes = (d, h_1, ..., h_{L-1}, 1)`` with Leaky ReLU (Sect. V-C);
    ``P = sum_k (fan_in_k + 1) fan_out_k`` parameters.

    Weights are Xavier-uniform, ``U(-a, a)`` with ``a = sqrt(6 / (fan_in + fan_out))``;
    biases are zero.  ``sizes`` must start with the input dimension and end with 1.
    """

    def __init__(self, sizes=(784, 32, 16, 1), slope: float = 0.01):
        sizes = tuple(sizes) if hasattr(sizes, "__iter__") else sizes
        if not isinstance(sizes, tuple) or len(sizes) < 2:
            _checks.fail("sizes", "a sequence (d, h_1, ..., 1) of at least two sizes",
                         repr(sizes), TypeError)
        for i, s in enumerate(sizes):
            _checks.positive_int(f"sizes[{i}]", s)
        if sizes[-1] != 1:
            _checks.fail("sizes", "a last entry of 1 (one sigmoid output unit)", repr(sizes))
        if isinstance(slope, bool) or not isinstance(slope, (int, float)) or not (0 <= slope <= 1):
            _checks.fail("slope", "a number in [0, 1] (1 makes the net linear)", repr(slope))
        self.sizes = tuple(int(s) for s in sizes)
        self.slope = float(slope)
        self.shapes = list(zip(self.sizes[:-1], self.sizes[1:]))
        self._layout()

    def __repr__(self):
        return f"MLP(sizes={self.sizes}, slope={self.slope})"

    def init(self, seed=None, dtype=np.float64, device=None):
        """``initW`` of Alg. 2 for the MLP: Xavier-uniform weights, zero biases, shape
        ``(P,)``; the draw is made on the host from ``seed``."""
        dtype = self._check_dtype(dtype)
        rng = np.random.default_rng(seed)
        w = np.zeros(self.n_params, dtype=np.float64)
        for W, _ in self.unpack(w):
            a = np.sqrt(6.0 / (W.shape[0] + W.shape[1]))
            W[...] = rng.uniform(-a, a, size=W.shape)
        return get_array_module(device=device).asarray(w, dtype=dtype)

    # -- the derivative contract (see models/base.py) --------------------------------
    def forward(self, w, X):
        xp = get_array_module(w)
        layers = self.unpack(w)
        a, D = [X], []
        for k, (W, b) in enumerate(layers):
            Z = a[-1] @ W
            if k == len(layers) - 1:
                Z += b
                return SimpleNamespace(a=a, D=D, z=Z[:, 0])
            # Z += b; D = phi'(Z); a = phi(Z) = Z * D   (one fused pass: hvpoison/ops.py)
            Dk, Ak = ops.impl("bias_leaky_relu", xp)(xp, Z, b, self.slope)
            D.append(Dk)
            a.append(Ak)

    def backward(self, w, tape, dz, out):
        layers, grads = self.unpack(w), None if out is None else self.unpack(out)
        xp = get_array_module(w)
        deltas = [None] * len(layers)
        delta = dz[:, None]                              # delta_L = s
        for k in range(len(layers) - 1, -1, -1):
            deltas[k] = delta
            if out is not None:                          # out=None: the deltas only
                xp.matmul(tape.a[k].T, delta, out=grads[k][0])
                xp.sum(delta, axis=0, out=grads[k][1])
            if k > 0:
                delta = (delta @ layers[k][0].T) * tape.D[k - 1]
        return SimpleNamespace(deltas=deltas)

    def rop(self, w, tape, bwd, v, curv, out):
        layers, V, Rg = self.unpack(w), self.unpack(v), self.unpack(out)
        xp = get_array_module(w)
        L = len(layers)
        Ra = [None]                                      # R a_0 = 0
        for k in range(L):                               # line 2, R-forward
            RZ = tape.a[k] @ V[k][0]
            RZ += V[k][1]
            if Ra[k] is not None:
                RZ += Ra[k] @ layers[k][0]
            if k < L - 1:
                Ra.append(tape.D[k] * RZ)
        Rdelta = curv[:, None] * RZ                      # line 3, R-backward
        Rdeltas = [None] * L
        for k in range(L - 1, -1, -1):
            delta, (RgW, Rgb) = bwd.deltas[k], Rg[k]
            Rdeltas[k] = Rdelta
            xp.matmul(tape.a[k].T, Rdelta, out=RgW)
            if Ra[k] is not None:
                RgW += Ra[k].T @ delta
            xp.sum(Rdelta, axis=0, out=Rgb)
            if k > 0:
                Rdelta = (Rdelta @ layers[k][0].T + delta @ V[k][0].T) * tape.D[k - 1]
        return SimpleNamespace(Rdeltas=Rdeltas)

    def mixed_x(self, w, bwd, rbwd, v, rows):
        W1, V1 = self.unpack(w)[0][0], self.unpack(v)[0][0]
        d1, Rd1 = bwd.deltas[0], rbwd.Rdeltas[0]
        if rows is not None:
            d1, Rd1 = d1[rows], Rd1[rows]
        return Rd1 @ W1.T + d1 @ V1.T                    # line 4
