"""Evaluation helpers (Sect. V): train with test-time settings, test error, ``||w||^2/P``,
Kuncheva's consistency index, and ``lam_CV`` by K-fold cross-validation."""
from __future__ import annotations

import math

import numpy as np

from . import _checks
from .backend import get_array_module, to_numpy
from .hypergrad.result import DivergenceError
from .victims import DEFAULT_ETA, DEFAULT_T, GD, as_victim


def train(obj, X, y=None, lam=None, *, T=DEFAULT_T, eta=DEFAULT_ETA, w0=None, seed=0):
    """Full-batch gradient descent (Eq. 6) for ``T`` steps on ``X`` ``(n, d)``, ``y``
    ``(n,)`` (or Prepared ``X``): the GD victim's training, ``GD(T, eta).fit``
    (:class:`hvpoison.victims.GD`). The defaults, ``T = 200`` steps of ``eta = 0.1``, are
    the victim :func:`hvpoison.attack` anticipates by default (one default victim
    everywhere); ``w0`` defaults to ``model.init(seed)`` on ``X``'s device (zeros for LR, a
    Xavier draw for the MLP); ``eta="auto"``: ``c / L`` from the Hessian at ``lam``
    (:func:`hvpoison.stepsize.resolve_eta`).  Returns ``w_T`` ``(P,)``."""
    return GD(T, eta).fit(obj, X, y, lam, seed=seed, w0=w0)


def error(model, w, X, y):
    """Classification error ``mean(predict(X) != y)`` (Sect. V's test error) for ``w``
    ``(P,)``, ``X`` ``(n, d)``, ``y`` ``(n,)``; a float."""
    xp = get_array_module(w)
    return float((model.predict(w, X) != xp.asarray(y)).mean())


def weight_norms(model, w):
    """``||W_k||^2 / P_k`` per layer (Sect. V, Figs. 3 and 13; weights only, as the penalty
    sees them) for ``w`` ``(P,)``, shape ``(L,)``. Summed exactly (``math.fsum``): a numpy
    sum's last bit can depend on the memory alignment of its array."""
    return np.array([math.fsum((W * W).ravel().tolist()) / W.size
                     for W, _ in model.unpack(to_numpy(w))])


def kuncheva(a, b, k):
    """Kuncheva's consistency index (Sect. V-B, Fig. 5) of the top-``k`` features of ``a``
    and ``b`` (both ``(n,)``, ranked by ``|.|``); a float.

    ``I_C = (r n - k^2) / (k (n - k))`` with ``r`` the size of the intersection and ``n``
    the number of features; 1 for identical subsets, about 0 for independent ones.
    """
    a, b = np.abs(to_numpy(a)).ravel(), np.abs(to_numpy(b)).ravel()
    n = a.shape[0]
    if b.shape[0] != n:
        _checks.fail("b", f"{n} feature weights like a", f"{b.shape[0]}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 < k < n:
        _checks.fail("k", f"an integer in (0, {n})", repr(k))
    A, B = set(np.argsort(-a, kind="stable")[:k]), set(np.argsort(-b, kind="stable")[:k])
    r = len(A & B)
    return (r * n - k * k) / (k * (n - k))


def evaluate(obj, Xtr, ytr, Xte, yte, lam=None, *, T=DEFAULT_T, eta=DEFAULT_ETA, seed=0,
             w_clean=None, k=None, victim="gd"):
    """Train on ``(Xtr, ytr)`` (``(n, d)``, ``(n,)``, possibly poisoned) as ``victim``
    trains and report what Sect. V plots for the test set ``(Xte, yte)``.

    ``victim``: ``"gd"`` (``T`` steps of size ``eta`` from ``model.init(seed)``, the paper's
    test-time training), ``"exact"`` (to optimality, :class:`hvpoison.victims.Exact`), or a
    victim object (:mod:`hvpoison.victims`). The defaults (``"gd"``, ``T = 200``, ``eta =
    0.1``) are :func:`hvpoison.attack`'s: with every default the victim tested is the one
    the attack anticipated. To test exactly the victim a batch was made against, pass
    ``victim=batch.victim`` (it carries ``T``, ``eta`` -- ``"auto"`` resolved -- and
    ``w_init``).

    ``Xte`` ``(m, d)`` and ``yte`` ``(m,)`` (labels in {0, 1}, one per row) are checked
    like the training set: labels in {-1, +1} or a column ``(m, 1)`` are errors naming
    ``yte``, not a test error of 0.5.

    Returns a dict with ``test_error``, ``w_norm2`` (``||W_k||^2/P_k`` per layer),
    ``w`` and, when ``w_clean`` and ``k`` are given, ``kuncheva`` between the top-``k``
    input features of ``w`` and ``w_clean``, a feature's weight being ``sum_j |W_1[i, j]|``
    (for LR simply ``|w_i|``).
    """
    test = obj.prepare(Xte, yte, None, ("Xte", "yte"), _dtype_of(Xtr))
    w = as_victim(victim, T, eta).fit(obj, Xtr, ytr, lam, seed=seed)
    Xte, yte = test.X, test.y
    out = {"test_error": error(obj.model, w, Xte, yte),
           "w_norm2": weight_norms(obj.model, w), "w": w}
    if w_clean is not None and k is not None:
        out["kuncheva"] = kuncheva(feature_weights(obj.model, w),
                                   feature_weights(obj.model, w_clean), k)
    return out


def _dtype_of(X):
    """The dtype the training data (an array or Prepared data) fixes for the test set."""
    dtype = getattr(X, "dtype", None)
    return dtype if dtype in (np.float32, np.float64) else None


def feature_weights(model, w):
    """A feature's importance for Kuncheva's index (Sect. V-B), ``sum_j |W_1[i, j]|`` over
    the first layer, shape ``(d,)``
    (for LR simply ``|w_i|``); Kuncheva's index compares the top-``k`` of these."""
    return abs(model.unpack(w)[0][0]).sum(axis=1)


def lam_cv(obj, X, y, grid=None, *, K=5, T=DEFAULT_T, eta=DEFAULT_ETA, seed=0):
    """``lam_CV`` (Sect. V): the grid value with the lowest mean K-fold validation
    cross-entropy on ``X`` ``(n, d)``, ``y`` ``(n,)``.

    ``grid`` defaults to ``linspace(-8, 2, 11)`` (log-scale ``lam``); each fold trains
    the default victim, ``T = 200`` steps of ``eta = 0.1``, unless told otherwise.  Folds are a seeded
    permutation; a ``lam`` whose training diverges with ``eta`` gets the loss ``inf``.
    Returns ``(best_lam, mean_losses)``.
    """
    if obj.penalty is None:
        _checks.fail("obj", "an Objective with a penalty", repr(obj))
    if grid is None:
        grid = np.linspace(-8.0, 2.0, 11)
    else:
        try:
            grid = np.asarray(grid, dtype=float).ravel()
        except (TypeError, ValueError):
            _checks.fail("grid", "a non-empty list of finite lam values", repr(grid), TypeError)
        if grid.size == 0 or not np.isfinite(grid).all():
            _checks.fail("grid", "a non-empty list of finite lam values", repr(grid.tolist()))
    K = _checks.positive_int("K", K)
    n = X.shape[0]
    if K < 2 or K > n:
        _checks.fail("K", f"an integer in [2, {n}]", repr(K))
    folds = np.array_split(np.random.default_rng(seed).permutation(n), K)
    xp = get_array_module(X)
    losses = np.zeros(len(grid))
    for i, lam in enumerate(grid):
        for f in folds:
            mask = np.ones(n, bool)
            mask[f] = False
            tr, va = xp.asarray(np.flatnonzero(mask)), xp.asarray(f)
            try:
                w = train(obj, X[tr], y[tr], float(lam), T=T, eta=eta, seed=seed)
            except DivergenceError:             # this lam cannot be trained with eta
                losses[i] = np.inf
                break
            losses[i] += float(obj.val_loss(w, X[va], y[va])) / K
    if not np.isfinite(losses).any():
        raise DivergenceError(f"lam_cv: training diverged for every lam of the grid "
                              f"{grid.tolist()} with eta = {eta}; lower eta")
    return float(grid[int(np.argmin(losses))]), losses
