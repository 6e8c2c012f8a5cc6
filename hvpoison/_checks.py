"""Argument checks shared by every public entry point.

Every error has the same form: ``<argument>: expected <what>, got <what was given>``.
Checks run once per public call; the hot loops (Alg. 1, Alg. 2) validate their inputs up
front and then call the unchecked internals.
"""
from __future__ import annotations

import numbers

import numpy as np

from .backend import get_array_module, to_numpy


def fail(name, expected, got, exc=ValueError):
    """Raise ``exc("<name>: expected <expected>, got <got>")``; a ``got`` longer than
    :data:`GOT_MAX` characters is cut (an error is one short line, whatever was passed)."""
    got = str(got)
    if len(got) > GOT_MAX:
        got = f"{got[:GOT_MAX]}... ({len(got)} characters)"
    raise exc(f"{name}: expected {expected}, got {got}")


#: the longest ``got`` an error message quotes
GOT_MAX = 200


#: the longest repr an error message quotes (a 16 MB list must not become the message)
REPR_MAX = 80


def short_repr(a, limit=REPR_MAX) -> str:
    """``repr(a)``, cut to ``limit`` characters with the total length noted; for a long
    list or tuple only its first items are formatted at all."""
    if isinstance(a, (list, tuple)) and len(a) > 8:
        head = ", ".join(short_repr(x, limit) for x in a[:3])
        text = f"[{head}, ...] ({len(a)} items)" if isinstance(a, list) else \
            f"({head}, ...) ({len(a)} items)"
    else:
        text = repr(a)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def describe(a):
    shape = getattr(a, "shape", None)
    dtype = getattr(a, "dtype", None)
    if shape is not None:
        return f"{type(a).__name__} of shape {tuple(shape)} and dtype {dtype}"
    return f"{type(a).__name__} {short_repr(a)}"


def _is_array(a):
    return hasattr(a, "shape") and hasattr(a, "dtype")


def positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        fail(name, "a positive integer", repr(value), TypeError)
    if value <= 0:
        fail(name, "a positive integer", repr(value))
    return int(value)


def positive_float(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(name, "a positive number", repr(value), TypeError)
    if not np.isfinite(value) or value <= 0:
        fail(name, "a positive finite number", repr(value))
    return float(value)


def nonnegative_float(name, value):
    """A finite number >= 0 (a damping, a decay)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not (np.isfinite(value) and value >= 0):
        fail(name, "a finite number >= 0", repr(value))
    return float(value)


def floating_dtype(name, dtype):
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        fail(name, "float32 or float64", str(dtype), TypeError)
    return dtype


def _all_finite(xp, a):
    return bool(xp.isfinite(a).all())


def params(name, w, n_params):
    """A flat float32/float64 parameter vector of length ``n_params``."""
    if not _is_array(w):
        fail(name, f"a 1-D float array of length {n_params}", describe(w), TypeError)
    if w.dtype not in (np.float32, np.float64):
        fail(name, "dtype float32 or float64", describe(w), TypeError)
    if w.ndim != 1 or w.shape[0] != n_params:
        fail(name, f"shape ({n_params},)", describe(w))
    if not _all_finite(get_array_module(w), w):
        fail(name, "finite values", "NaN or inf")
    return w


def params_many(name, W, n_params):
    """``K >= 1`` flat float32/float64 parameter vectors as the rows of a finite ``(K,
    n_params)`` array (several starts of one training, trained together)."""
    if not _is_array(W):
        fail(name, f"a 2-D float array of shape (K, {n_params})", describe(W), TypeError)
    if W.dtype not in (np.float32, np.float64):
        fail(name, "dtype float32 or float64", describe(W), TypeError)
    if W.ndim != 2 or W.shape[0] == 0 or W.shape[1] != n_params:
        fail(name, f"shape (K, {n_params}) with K >= 1 (one start per row)", describe(W))
    if not _all_finite(get_array_module(W), W):
        fail(name, "finite values", "NaN or inf")
    return W


def vector_like(name, v, w):
    """A direction with the length of ``w``; cast to ``w``'s dtype and module."""
    xp = get_array_module(w)
    if not _is_array(v):
        fail(name, f"a 1-D float array of length {w.shape[0]}", describe(v), TypeError)
    if v.ndim != 1 or v.shape[0] != w.shape[0]:
        fail(name, f"shape ({w.shape[0]},) like w", describe(v))
    if v.dtype.kind not in "fiu":
        fail(name, "a real-valued array", describe(v), TypeError)
    v = xp.asarray(v, dtype=w.dtype)
    if not _all_finite(xp, v):
        fail(name, "finite values", "NaN or inf")
    return v


def features(name, X, n_features, dtype):
    """A 2-D ``n x n_features`` float matrix of the same dtype as the parameters."""
    if not _is_array(X):
        fail(name, f"a 2-D float array with {n_features} columns", describe(X), TypeError)
    if X.ndim != 2 or X.shape[1] != n_features or X.shape[0] == 0:
        fail(name, f"shape (n, {n_features}) with n >= 1", describe(X))
    if X.dtype != dtype:
        fail(name, f"dtype {np.dtype(dtype)} (the dtype of w; cast X or build w with "
             f"model.init(seed, dtype=X.dtype))", describe(X), TypeError)
    if not _all_finite(get_array_module(X), X):
        fail(name, "finite values", "NaN or inf")
    return X


def labels(name, y, n, dtype):
    """Labels in {0, 1}, one per row; returned in the parameters' dtype."""
    if not _is_array(y):
        fail(name, f"a 1-D array of {n} labels in {{0, 1}}", describe(y), TypeError)
    if y.ndim != 1 or y.shape[0] != n:
        fail(name, f"shape ({n},) (one label per row of X)", describe(y))
    if y.dtype.kind not in "biuf":
        fail(name, "numeric labels in {0, 1}", describe(y), TypeError)
    xp = get_array_module(y)
    y = xp.asarray(y, dtype=dtype)
    if not bool(((y == 0) | (y == 1)).all()):
        bad = to_numpy(y[(y != 0) & (y != 1)])[:3]
        fail(name, "labels in {0, 1}", f"values such as {bad.tolist()}")
    return y


def lam(name, lam, n_lam, xp, dtype):
    """``None``, a finite scalar, or a 1-D array of ``n_lam`` finite values.

    Returns ``(lam_vec, shape)``: a 1-D ``xp`` array of one value per penalty group (a
    scalar is repeated) and the shape the hypergradient must come back in (``()`` for a
    scalar), or ``(None, None)`` for no penalty.
    """
    if lam is None:
        return None, None
    if isinstance(lam, bool):
        fail(name, "None, a float or a 1-D array", short_repr(lam), TypeError)
    if isinstance(lam, numbers.Real):
        if not np.isfinite(lam):
            fail(name, "a finite value (use None for no regularisation)", repr(lam))
        finite_exp(name, np.array([float(lam)]), dtype)
        return xp.full(n_lam, float(lam), dtype=dtype), ()
    if not _is_array(lam):
        fail(name, "None, a float or a 1-D array", describe(lam), TypeError)
    if lam.dtype.kind not in "iuf":
        fail(name, "a real-valued array", describe(lam), TypeError)
    if lam.ndim == 0:
        vec = xp.full(n_lam, 0.0, dtype=dtype) + xp.asarray(lam, dtype=dtype)
        shape = ()
    elif lam.ndim == 1 and lam.shape[0] == n_lam:
        vec = xp.asarray(lam, dtype=dtype)
        shape = (n_lam,)
    else:
        fail(name, f"a scalar or shape ({n_lam},) (one value per penalty group)", describe(lam))
    if not _all_finite(xp, vec):
        fail(name, "finite values (use None for no regularisation)", "NaN or inf")
    finite_exp(name, to_numpy(vec), dtype)
    return vec, shape


def finite_exp(name, values, dtype):
    """``exp(lam)`` (Eq. 1's strength) must be finite in ``dtype``: ``lam = 1e6`` is an
    error naming ``lam``, not a NaN loss."""
    top = float(np.log(np.finfo(np.dtype(dtype)).max))
    big = np.asarray(values, dtype=float)
    if big.size and big.max() >= top:
        fail(name, f"values with a finite exp(lam) in {np.dtype(dtype)} (lam < {top:.1f})",
             short_repr(big.max().item()))


def rows(name, idx, n, xp):
    """Unique row indices into an ``n``-row matrix, as an integer ``xp`` array."""
    if idx is None:
        return None
    host = np.asarray(to_numpy(idx))
    if host.ndim != 1 or (host.size and host.dtype.kind not in "iu"):
        fail(name, "a 1-D array of integer row indices", describe(host), TypeError)
    if host.size and (host.min() < 0 or host.max() >= n):
        fail(name, f"indices in [0, {n})", f"range [{host.min()}, {host.max()}]")
    if np.unique(host).size != host.size:
        fail(name, "unique row indices", "duplicates")
    return xp.asarray(host.astype(np.int64))
