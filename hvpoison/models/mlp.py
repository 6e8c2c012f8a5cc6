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

Blocked products. Lines 2-3 are linear in ``v``, so ``m`` directions ``V`` ``(P, m)`` share
one pass: every ``R`` quantity is kept as ``(n, m, h)`` (row ``i`` of direction ``j`` at
``[i, j]``), so ``R a_{k-1} W_k`` and ``R delta_k W_k^T`` are single ``(n m, h) @ (h, h')``
GEMMs, and the products with the data are ``X [V_1 ... V_m]`` ``(n, d) @ (d, m h_1)`` and
``X^T [R delta_1 ...]`` ``(d, n) @ (n, m h_1)``: GEMMs of width ``m h_1`` instead of ``m``
passes over ``X``. A single ``v`` ``(P,)`` is the case ``m = 1``.

Fused fresh point. ``forward_r`` runs the forward pass and line 2 with the first layer as
one GEMM ``X [W_1  V_1]`` ``(n, (1 + m) h_1)``; ``backward_r`` runs lines 1 and 3 with the
first layer's weight products as one GEMM ``X^T [delta_1  R delta_1]``, so ``grad`` and
``H v`` at a fresh point read ``X`` twice instead of four times (``H v`` alone: also
twice, instead of three times).

Several starts. ``K`` independent parameter vectors ``W`` ``(K, P)`` on the same ``X`` (the
GD victim's fixed Xavier draws, trained in step: ``GD.fit_many``) share each pass's products
with the data: every layer is kept side by side as ``(n, K h_k)``, so the forward pass's
first layer is one GEMM ``X [W_1^1 ... W_1^K]`` ``(n, d) @ (d, K h_1)`` and line 1's
``X^T [delta_1^1 ... delta_1^K]`` one ``(K h_1, n) @ (n, d)``; the small later layers are
batched matmuls over the starts (:meth:`MLP.forward_many`, :meth:`MLP.backward_many`).
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from .. import _checks
from .. import ops
from ..backend import get_array_module
from .base import Model


def _as_block(V):
    """``V`` ``(P, m)`` as given, or ``v`` ``(P,)`` as the view ``(P, 1)``."""
    return V[:, None] if V.ndim == 1 else V


def _xt(A, M):
    """``(A^T M)^T = M^T A`` ``(b, a)`` for ``A`` ``(n, a)`` (``X`` or ``a_k``), ``M``
    ``(n, b)``: the weight products of lines 1 and 3 are formed in this orientation (a
    C-order ``(b, a)`` result), which OpenBLAS runs 1.5-2x faster in float64 than ``A^T
    M`` into a C-order ``(a, b)`` (and about as fast in float32); the caller writes it
    transposed (a copy of ``a b`` numbers, no pass over the data)."""
    return M.T @ A


#: rows of ``X`` from which :func:`_xw` uses the transposed orientation (faster from 2000
#: rows with one BLAS thread or two; at 1000 rows faster on one thread only: 1.05x in an
#: RMD there, 0.97x on two, so not used; ``bench/RESULTS.md``, 2026-12-01)
XW_ROWS = 2048


def _xw(X, W):
    """``X W`` ``(n, b)`` for the data ``X`` ``(n, a)`` and ``W`` ``(a, b)`` (the first layer's
    products of the forward pass and line 2): in float64 on the CPU, for ``n >=`` :data:`XW_ROWS`
    and ``b >= 2``, formed as ``(W^T X^T)^T`` (an F-order result), which OpenBLAS runs
    1.1-1.5x faster from ``n = 2000`` on (``bench/RESULTS.md``); plainly otherwise (float32
    is slower that way, small ``n`` gains nothing, and keeps its last bits: the Alg. 2
    golden run of ``tests/test_methods.py``)."""
    if X.dtype == np.float64 and isinstance(X, np.ndarray) and W.shape[1] > 1 and \
            X.shape[0] >= XW_ROWS:
        return (W.T @ X.T).T
    return X @ W


def _weight_rgrad(O3, a, Rdelta, Ra, delta):
    """Line 3's ``R grad_W_k = a_{k-1}^T R delta_k + R a_{k-1}^T delta_k`` for ``m``
    directions into ``O3`` ``(fan_in, fan_out, m)`` (a view of ``out``), from ``a``
    ``(n, fan_in)``, ``Rdelta`` ``(n, m, fan_out)``, ``Ra`` ``(n, m, fan_in)`` or None
    (``R a_0 = 0``) and ``delta`` ``(n, fan_out)``: two GEMMs of width ``m``."""
    n, (fi, fo, m) = a.shape[0], O3.shape
    # a^T R delta: (m fo, fi), [j fo + o, i] -> O3[i, o, j]
    O3[...] = _xt(a, Rdelta.reshape(n, m * fo)).reshape(m, fo, fi).transpose(2, 1, 0)
    if Ra is not None:        # R a^T delta: (fo, m fi), [o, j fi + i] -> O3[i, o, j]
        O3 += _xt(Ra.reshape(n, m * fi), delta).reshape(fo, m, fi).transpose(2, 0, 1)


def _starts(A, K):
    """Start ``j``'s block of ``A`` ``(n, K h)`` (columns ``j h .. (j + 1) h``) for every
    ``j`` at once: the strided view ``(K, n, h)`` (no copy for a C-order ``A``)."""
    return A.reshape(A.shape[0], K, -1).transpose(1, 0, 2)


def _per_start(xp, A, B):
    """``A[j] @ B[j]`` for every start ``j`` (``A`` ``(K, n, a)``, e.g. a :func:`_starts`
    view, ``B`` ``(K, a, b)``) as one batched matmul, returned as ``(n, K b)`` in C order
    (start ``j``'s block in columns ``j b .. (j + 1) b``, the multi-start layout); numpy
    writes it there directly (a strided ``out``), other modules through one copy."""
    K, n, b = A.shape[0], A.shape[1], B.shape[2]
    if xp is np:
        out = np.empty((n, K, b), dtype=A.dtype)
        np.matmul(A, B, out=out.transpose(1, 0, 2))
        return out.reshape(n, K * b)
    return xp.ascontiguousarray(xp.matmul(A, B).transpose(1, 0, 2)).reshape(n, K * b)


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
        layers = self.unpack(w)
        return self._forward(get_array_module(w), layers, X, _xw(X, layers[0][0]))

    def _forward(self, xp, layers, X, Z):
        """The forward pass given the first layer's ``Z = X W_1`` ``(n, h_1)`` before its
        bias (``forward_r`` hands in a strided view of its fused GEMM)."""
        a, D = [X], []
        for k, (W, b) in enumerate(layers):
            if k > 0:
                Z = a[-1] @ W
            if k == len(layers) - 1:
                Z += b
                return SimpleNamespace(a=a, D=D, z=xp.ascontiguousarray(Z[:, 0]))
            # Z += b; D = phi'(Z); a = phi(Z) = Z * D   (one fused pass: hvpoison/ops.py;
            # numpy and the numba twin take a strided Z, the CUDA kernel wants C order)
            Z = Z if xp is np else xp.ascontiguousarray(Z)
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
                grads[k][0][...] = _xt(tape.a[k], delta).T
                xp.sum(delta, axis=0, out=grads[k][1])
            if k > 0:
                delta = (delta @ layers[k][0].T) * tape.D[k - 1]
        return SimpleNamespace(deltas=deltas)

    def rop(self, w, tape, bwd, v, curv, out):
        """Lines 2-3 for ``v`` ``(P,)``: ``rbackward(rforward(v))``; returns ``rbwd``
        (``Rdeltas[k]`` ``(n, h_k)``). (Eq. 4's ``H v``, R-operator.)"""
        return self.rbackward(w, tape, bwd, self.rforward(w, tape, v), curv, out)

    blocked_rop = True

    def rop_block(self, w, tape, curv, V, out, bwd=None):
        """Lines 2-3 for ``V`` ``(P, m)`` in one R pass into ``out`` ``(P, m)`` (the model
        part of ``H V``, Eq. 4); ``bwd`` (the deltas of ``backward(w, tape, residual,
        None)``) is required: line 3 needs ``delta_k``."""
        if bwd is None:
            _checks.fail("bwd", "the backward state (MLP.rop_block needs the deltas of line 1)",
                         "None")
        self.rbackward(w, tape, bwd, self.rforward(w, tape, V), curv, out)
        return out

    def rforward(self, w, tape, V):
        """Line 2 for ``v`` ``(P,)`` or ``V`` ``(P, m)`` on a kept tape, the first layer as one
        GEMM ``X [V_1 ... V_m]`` ``(n, d) @ (d, m h_1)``; returns ``rtape`` with ``Rz``
        ``(n,)`` or ``(n, m)`` (``R z``), and ``Ra``, ``RZ`` (``(n, m, h)``) for
        :meth:`rbackward`. (Eq. 4's ``H v``, R-operator.)"""
        V2 = _as_block(V)
        X, n, m = tape.a[0], tape.a[0].shape[0], V2.shape[1]
        RZ = _xw(X, self._vblock(V2, 0, "f")).reshape(n, m, -1)
        return self._rforward(get_array_module(w), self.unpack(w), tape, V2, RZ, V.ndim)

    def rbackward(self, w, tape, bwd, rtape, curv, out):
        """Line 3 into ``out`` (``(P,)`` or ``(P, m)``, as ``rtape``'s ``V``) given line 1's
        deltas ``bwd`` and line 2's ``rtape``, ``curv`` ``(n,)``; returns ``rbwd``
        (``Rdeltas[k]``: ``(n, h_k)`` for one ``v``, ``(n, m, h_k)`` for a block). (Eq. 4's
        ``H v``, R-operator.)"""
        return self._rbackward(get_array_module(w), self.unpack(w), tape, bwd, rtape, curv,
                               _as_block(out), None)

    def forward_r(self, w, X, V):
        """The forward pass and line 2 at a fresh point, ``X`` ``(n, d)``, ``V`` ``(P,)`` or
        ``(P, m)``, the first layer as one GEMM ``X [W_1 V_1 ... V_m]`` ``(n, (1 + m)
        h_1)``; returns ``(tape, rtape)``, equal to ``(forward(w, X), rforward(w, tape,
        V))`` to rounding. (Eq. 4's ``H v``, R-operator.)"""
        xp, layers, V2 = get_array_module(w), self.unpack(w), _as_block(V)
        (a, b, _), (fi, fo), n, m = self._offsets[0], self.shapes[0], X.shape[0], V2.shape[1]
        WV = xp.empty((fi, 1 + m, fo), dtype=w.dtype)    # [W_1  V_1 ... V_m], one copy
        WV[:, 0] = layers[0][0]
        WV[:, 1:] = V2[a:b].reshape(fi, fo, m).transpose(0, 2, 1)
        ZZ = _xw(X, WV.reshape(fi, -1)).reshape(n, 1 + m, fo)
        tape = self._forward(xp, layers, X, ZZ[:, 0])
        return tape, self._rforward(xp, layers, tape, V2, ZZ[:, 1:], V.ndim)

    def backward_r(self, w, tape, dz, rtape, curv, out_g, out_hv):
        """Lines 1 and 3 together for the seed ``dz = residual`` ``(n,)`` and ``curv`` ``(n,)``
        (both from the loss on ``tape.z``): ``grad_w sum_i dz_i z_i`` into ``out_g``
        ``(P,)`` and ``R{grad_w}`` into ``out_hv`` (``(P,)`` or ``(P, m)``, as ``rtape``),
        the first layer's weight products as one GEMM ``X^T [delta_1 R delta_1]`` ``(d, n) @
        (n, (1 + m) h_1)``. With ``out_g=None`` only ``X^T R delta_1`` reads ``X`` (a lone
        ``H v``). Returns ``(bwd, rbwd)``. (Eq. 4's ``H v``, R-operator.)"""
        bwd = self.backward(w, tape, dz, None)           # the deltas: no pass over X
        return bwd, self._rbackward(get_array_module(w), self.unpack(w), tape, bwd, rtape,
                                    curv, _as_block(out_hv), out_g)

    # -- lines 2 and 3 for m directions, every R quantity (n, m, h) --------------------
    def _vblock(self, V, k, order):
        """Layer ``k``'s weight directions of ``V`` ``(P, m)`` as one C-order matrix (one
        copy). ``"f"``: ``(fan_in, m fan_out)``, column ``j fan_out + o`` = ``V_k[:, o]``
        of direction ``j`` (line 2's ``a_{k-1} V_k``); ``"b"``: ``(fan_out, m fan_in)``,
        the ``V_k^T`` side by side (line 3's ``delta_k V_k^T``)."""
        xp, (a, b, _), (fi, fo) = get_array_module(V), self._offsets[k], self.shapes[k]
        V3 = V[a:b].reshape(fi, fo, V.shape[1])          # a view: V[a:b, j] = V_k.ravel()
        if order == "f":
            return xp.ascontiguousarray(V3.transpose(0, 2, 1)).reshape(fi, -1)
        return xp.ascontiguousarray(V3.transpose(1, 2, 0)).reshape(fo, -1)

    def _rforward(self, xp, layers, tape, V, RZ, ndim):
        """Line 2 for ``V`` ``(P, m)`` given the first layer's ``X V_1`` as ``RZ`` ``(n, m,
        h_1)`` (updated in place); ``R a_{k-1} W_k`` is one ``(n m, h) @ (h, h')`` GEMM."""
        n, m = RZ.shape[:2]
        Ra = [None]                                      # R a_0 = 0
        for k, (W, _) in enumerate(layers):
            b, c = self._offsets[k][1:]
            if k > 0:                                    # R a_{k-1} W_k + a_{k-1} V_k
                RZ = (Ra[k].reshape(n * m, -1) @ W).reshape(n, m, -1)
                RZ += (tape.a[k] @ self._vblock(V, k, "f")).reshape(n, m, -1)
            RZ += V[b:c].T                               # + v_{b,k}: (m, h_k)
            if k < len(layers) - 1:
                Ra.append(tape.D[k][:, None, :] * RZ)    # R a_k = D_k * R Z_k
        Rz = RZ[:, :, 0] if ndim == 2 else RZ[:, 0, 0]
        return SimpleNamespace(Ra=Ra, RZ=RZ, Rz=Rz, V=V)

    def _rbackward(self, xp, layers, tape, bwd, rtape, curv, out, out_g):
        """Line 3 for ``m`` directions into ``out`` ``(P, m)``; with ``out_g`` ``(P,)`` also
        line 1's products, the first layer's joined to line 3's in one GEMM."""
        Ra, V, (n, m) = rtape.Ra, rtape.V, rtape.RZ.shape[:2]
        L, joint = len(layers), out_g is not None
        grads = self.unpack(out_g) if joint else None
        S = None                          # joint: [delta_1  R delta_1] (n, 1 + m, h_1)
        if joint:
            S = xp.empty((n, 1 + m, self.shapes[0][1]), dtype=out.dtype)
            S[:, 0] = bwd.deltas[0]
        Rdelta = xp.multiply(curv[:, None, None], rtape.RZ,   # R delta_L = curv * R z
                             out=S[:, 1:] if joint and L == 1 else None)
        Rdeltas = [None] * L
        for k in range(L - 1, -1, -1):
            (W, _), (a, b, c), (fi, fo) = layers[k], self._offsets[k], self.shapes[k]
            delta, O3 = bwd.deltas[k], out[a:b].reshape(fi, fo, m)  # a view of out
            Rdeltas[k] = Rdelta
            if k == 0 and joint:          # X^T [delta_1  R delta_1]: lines 1 and 3 at once
                G = _xt(tape.a[0], S.reshape(n, -1)).reshape(1 + m, fo, fi)
                grads[0][0][...] = G[0].T
                O3[...] = G[1:].transpose(2, 1, 0)
            else:
                _weight_rgrad(O3, tape.a[k], Rdelta, Ra[k], delta)
                if joint:
                    grads[k][0][...] = _xt(tape.a[k], delta).T
            out[b:c] = Rdelta.sum(axis=0).T              # R grad_b = 1^T R delta
            if joint:
                xp.sum(delta, axis=0, out=grads[k][1])
            if k > 0:                     # R delta_{k-1} = (R delta W^T + delta V^T) * D
                R = (Rdelta.reshape(n * m, fo) @ W.T).reshape(n, m, fi)
                R += (delta @ self._vblock(V, k, "b")).reshape(n, m, fi)
                Rdelta = xp.multiply(R, tape.D[k - 1][:, None, :],
                                     out=S[:, 1:] if joint and k == 1 else R)
        if rtape.Rz.ndim == 1:            # one direction: (n, h_k), as mixed_x takes them
            Rdeltas = [R[:, 0] for R in Rdeltas]
        return SimpleNamespace(Rdeltas=Rdeltas)

    # -- K independent starts at once (GD.fit_many), every layer (n, K h) ------------
    def forward_many(self, W, X):
        """The forward pass (Sect. V's MLP, inside each step of Eq. 6) for ``K`` parameter
        vectors ``W`` ``(K, P)`` on one ``X`` ``(n, d)``, reading ``X`` once for all of them. Every layer is kept side by side, ``(n, K
        h_k)`` with start ``j`` in columns ``j h_k .. (j + 1) h_k``, and per start each line
        is :meth:`forward`'s:

        - ``Z_1 = X [W_1^1 ... W_1^K]``: one GEMM ``(n, d) @ (d, K h_1)`` (the stacked
          weights ``(d, K h_1)`` are one copy of ``K d h_1`` numbers);
        - ``Z_k += [b_k^1 ... b_k^K]``, ``D_k = phi'(Z_k)``, ``a_k = Z_k * D_k`` on the
          whole ``(n, K h_k)`` block (the fused op ``bias_leaky_relu``);
        - ``Z_k = a_{k-1} W_k`` for ``k > 1``, per start: one batched matmul ``(K, n,
          h_{k-1}) @ (K, h_{k-1}, h_k)`` on the strided view of ``a_{k-1}``
          (:func:`_per_start`: the layers after the first are small);
        - ``z = Z_L`` ``(n, K)``, returned as ``tape.z`` ``(K, n)`` (row ``j``: start
          ``j``'s logits).

        Returns the tape (``a[k]``, ``D[k]`` ``(n, K h_k)``, ``a[0] = X``, ``z``, ``K``)."""
        xp, layers, K, n = get_array_module(W), self.unpack_many(W), W.shape[0], X.shape[0]
        fi, fo = self.shapes[0]
        W1 = xp.ascontiguousarray(layers[0][0].transpose(1, 0, 2)).reshape(fi, K * fo)
        Z = _xw(X, W1)                                   # X [W_1^1 ... W_1^K], (n, K h_1)
        a, D = [X], []
        for k, (Wk, bk) in enumerate(layers):
            if k > 0:                                    # a_{k-1} W_k, per start
                Z = _per_start(xp, _starts(a[k], K), Wk)
            if k == len(layers) - 1:                     # h_L = 1: Z is (n, K)
                Z += bk.reshape(-1)
                return SimpleNamespace(a=a, D=D, z=xp.ascontiguousarray(Z.T), K=K)
            Z = Z if xp is np else xp.ascontiguousarray(Z)
            Dk, Ak = ops.impl("bias_leaky_relu", xp)(xp, Z, bk.reshape(-1), self.slope)
            D.append(Dk)
            a.append(Ak)

    def backward_many(self, W, tape, dz, out):
        """Line 1 (the gradient of Eq. 1's data term) for ``K`` starts on
        :meth:`forward_many`'s tape: the seeds ``dz`` ``(K,
        n)`` (row ``j``: start ``j``'s ``s``), ``grad_w sum_i dz_ji z_ji`` into ``out[j]``
        (``out`` ``(K, P)``). The deltas are kept side by side, ``(n, K h_k)``, and per
        start each line is :meth:`backward`'s:

        - ``delta_L = [s^1 ... s^K]`` ``(n, K)``;
        - ``grad_W_k = a_{k-1}^T delta_k`` for ``k > 1``: one batched matmul ``(K, h_k, n)
          @ (K, n, h_{k-1})`` on the strided views, written transposed;
        - ``grad_W_1``: ``X^T [delta_1^1 ... delta_1^K]`` as one GEMM ``(K h_1, n) @ (n,
          d)`` (:func:`_xt`'s orientation; one read of ``X`` for all starts);
        - ``grad_b_k = 1^T delta_k``: one column sum of ``(n, K h_k)``;
        - ``delta_{k-1} = (delta_k W_k^T) * D_{k-1}``: a batched matmul ``(K, n, h_k) @
          (K, h_k, h_{k-1})`` into ``(n, K h_{k-1})`` (:func:`_per_start`), then the mask
          in place."""
        xp, layers, grads, K = get_array_module(W), self.unpack_many(W), \
            self.unpack_many(out), W.shape[0]
        delta = xp.ascontiguousarray(dz.T)               # delta_L = s, (n, K)
        for k in range(len(layers) - 1, -1, -1):
            (fi, fo), (gW, gb) = self.shapes[k], grads[k]
            if k == 0:                                   # X^T [delta_1^1 ... delta_1^K]
                gW[...] = _xt(tape.a[0], delta).reshape(K, fo, fi).transpose(0, 2, 1)
            else:                                        # a_{k-1}^T delta_k, per start
                gW[...] = xp.matmul(_starts(delta, K).transpose(0, 2, 1),
                                    _starts(tape.a[k], K)).transpose(0, 2, 1)
            gb[...] = delta.sum(axis=0).reshape(K, fo)
            if k > 0:                                    # (delta_k W_k^T) * D_{k-1}
                delta = _per_start(xp, _starts(delta, K), layers[k][0].transpose(0, 2, 1))
                delta *= tape.D[k - 1]

    def forward_grad_many(self, W, X, y, out):
        """:meth:`forward_many`, each start's residual (the dispatched ``sigmoid_ce`` on
        its row of logits, as :meth:`forward_grad`) and :meth:`backward_many` into ``out``
        ``(K, P)``: Eq. 6's ``g`` less the penalty for ``K`` starts ``W`` ``(K, P)`` with
        two reads of ``X`` ``(n, d)`` for all of them (``2 K`` apart); ``y`` ``(n,)``.
        Returns the logits ``(K, n)``."""
        xp = get_array_module(W)
        tape, sigmoid_ce = self.forward_many(W, X), ops.impl("sigmoid_ce", xp)
        residual = xp.empty_like(tape.z)
        for j in range(W.shape[0]):
            residual[j] = sigmoid_ce(xp, tape.z[j], y, with_loss=False)[1]
        self.backward_many(W, tape, residual, out)
        return tape.z

    def mixed_x(self, w, bwd, rbwd, v, rows):
        W1, V1 = self.unpack(w)[0][0], self.unpack(v)[0][0]
        d1, Rd1 = bwd.deltas[0], rbwd.Rdeltas[0]
        if rows is not None:
            d1, Rd1 = d1[rows], Rd1[rows]
        return Rd1 @ W1.T + d1 @ V1.T                    # line 4
