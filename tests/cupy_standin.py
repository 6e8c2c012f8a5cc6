"""A numpy-backed stand-in for ``cupy`` and ``cupyx``: the GPU branches of the engine run,
in CI, on a machine with no GPU.

Only what hvpoison uses is here. What it keeps of cupy's contract, so that a bug on the
GPU is a bug here too:

- :class:`ndarray` wraps a numpy array but is **not** one to the library's dispatch
  (``type(a).__module__`` is ``"cupy"``, ``isinstance(a, numpy.ndarray)`` is False);
  numpy functions and ufuncs called on it return device arrays (cupy's
  ``__array_function__`` / ``__array_ufunc__``); reductions return 0-d device arrays, not
  numpy scalars.
- **No silent mixing**: an implicit conversion to numpy (``numpy.asarray(a)``) raises
  ``TypeError``, as cupy does, and so does a ufunc or a ``cupy.*`` function given a numpy
  array next to device arrays (``cupy.asarray``/``array``/``ascontiguousarray`` take host
  data: a host-to-device copy).
- **Every device-to-host transfer is counted** (:data:`transfers`): ``.get()``,
  ``cupy.asnumpy``, ``float()``, ``int()``, ``bool()``, ``.item()``, ``.tolist()``,
  ``repr`` and boolean-mask indexing (its size is read on the host), and
  ``cuda.Stream.synchronize``. Under ``cupyx.allow_synchronize(False)`` each of them raises
  ``cupyx.DeviceSynchronized``, as cupy does.
- ``cupyx.scipy.sparse.linalg.cg`` has cupyx's keywords (``rtol``/``tol``, ``atol``) and
  checks that the operator returns device arrays; ``cupyx.scipy.special`` and
  ``cupyx.scipy.linalg.solve_triangular`` wrap SciPy's.
- No kernels: ``cupy.RawModule`` raises, so the tests run with
  ``hvpoison.kernels.use_kernels(False)`` (``HVPOISON_KERNELS=0``), the references' path.

Use :func:`installed` (a context manager) to put the modules in ``sys.modules`` as
``cupy``, ``cupyx``, ... and take them out again afterwards.
"""
from __future__ import annotations

import contextlib
import functools
import sys
import types

import numpy as np
import scipy.linalg
import scipy.sparse.linalg
import scipy.special
from numpy.lib.mixins import NDArrayOperatorsMixin

__version__ = "0.0-standin"

#: device-to-host transfers (``"d2h"``, by the name of what caused them under
#: ``"why"``) and host-to-device copies (``"h2d"``) since the last :func:`reset`
transfers = {"d2h": 0, "h2d": 0, "why": {}}
_sync_allowed = [True]


class DeviceSynchronized(RuntimeError):
    """Raised on a wait for the device inside ``cupyx.allow_synchronize(False)``."""


def reset():
    transfers.update(d2h=0, h2d=0, why={})


def _sync(why):
    if not _sync_allowed[-1]:
        raise DeviceSynchronized(f"cupy stand-in: device synchronization ({why}) detected "
                                 "while allow_synchronize(False)")
    transfers["d2h"] += 1
    transfers["why"][why] = transfers["why"].get(why, 0) + 1


# -- unwrapping and wrapping --------------------------------------------------------------
def _unwrap(x, strict=True):
    """Device arrays to their numpy arrays (recursively in lists, tuples, dicts); a numpy
    array among them is an error (``strict``), as in cupy."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, np.ndarray):
        if strict:
            raise TypeError(f"Unsupported type {type(x)} (cupy stand-in: a numpy array "
                            "passed where a device array is needed)")
        return x
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(e, strict) for e in x)
    if isinstance(x, dict):
        return {k: _unwrap(v, strict) for k, v in x.items()}
    return x


def _wrap(r):
    """numpy results as device arrays: arrays and numpy scalars (0-d, as cupy's
    reductions return them); tuples and lists element by element."""
    if isinstance(r, np.ndarray):
        return ndarray(r)
    if isinstance(r, np.generic):
        return ndarray(np.asarray(r))
    if isinstance(r, tuple):
        return tuple(_wrap(e) for e in r)
    if isinstance(r, list):
        return [_wrap(e) for e in r]
    return r


def _index(key):
    """An index for ``__getitem__``/``__setitem__``: device arrays unwrapped; a boolean
    mask makes the result's size depend on device data: a wait, as in cupy."""
    key = _unwrap(key, strict=False)
    parts = key if isinstance(key, tuple) else (key,)
    if any(isinstance(p, np.ndarray) and p.dtype == bool for p in parts):
        _sync("boolean-mask indexing")
    return key


class ndarray(NDArrayOperatorsMixin):
    """A device array (numpy inside). See the module docstring for what it keeps."""

    __slots__ = ("_a",)
    __array_priority__ = 100

    def __init__(self, a):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"cupy stand-in: ndarray wraps numpy arrays, got {type(a)}")
        self._a = a

    # -- cupy's interoperability protocol --
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use "
                        "`.get()` to construct a NumPy array explicitly.")

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        args = _unwrap(inputs)
        if out is not None:
            kwargs["out"] = tuple(_unwrap(o) for o in out)
        r = getattr(ufunc, method)(*args, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(r)

    def __array_function__(self, func, types_, args, kwargs):
        r = func(*_unwrap(args), **_unwrap(kwargs))
        return _wrap(r)

    # -- attributes --
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray(self._a.T))
    real = property(lambda self: ndarray(self._a.real))
    device = property(lambda self: _DEVICE)

    def __getattr__(self, name):              # numpy's methods, on device arrays
        if name.startswith("__") or name in ("tobytes", "tofile", "data", "ctypes"):
            # no __array_interface__ / __array_struct__ / buffer: numpy cannot read it
            raise AttributeError(f"cupy stand-in: ndarray.{name} is not offered (use .get())")
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)

        @functools.wraps(attr)
        def method(*args, **kwargs):
            if "out" in kwargs and kwargs["out"] is not None:
                out = kwargs["out"]
                kwargs["out"] = _unwrap(out)
                attr(*_unwrap(args), **kwargs)
                return out
            return _wrap(attr(*_unwrap(args), **kwargs))

        return method

    # -- indexing and iteration --
    def __getitem__(self, key):
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        self._a[_index(key)] = _unwrap(value, strict=False)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (ndarray(np.asarray(r)) if not isinstance(r, np.ndarray) else ndarray(r)
                for r in self._a)

    def __copy__(self):
        return ndarray(self._a.copy())

    def __deepcopy__(self, memo):
        return ndarray(self._a.copy())

    # -- what reaches the host: each one a transfer --
    def get(self, stream=None, order="C", out=None):
        _sync("get")
        return self._a.copy()

    def item(self):
        _sync("item")
        return self._a.item()

    def tolist(self):
        _sync("tolist")
        return self._a.tolist()

    def __float__(self):
        _sync("float")
        return float(self._a)

    def __int__(self):
        _sync("int")
        return int(self._a)

    def __index__(self):
        _sync("index")
        return self._a.__index__()

    def __bool__(self):
        _sync("bool")
        return bool(self._a)

    def __complex__(self):
        _sync("complex")
        return complex(self._a)

    def __format__(self, spec):
        _sync("format")
        return format(self._a.item() if self._a.ndim == 0 else self._a, spec)

    def __repr__(self):
        _sync("repr")
        return repr(self._a).replace("array(", "array(", 1)

    __str__ = __repr__


ndarray.__module__ = "cupy"     # what hvpoison.backend.is_cupy_array reads


# -- the cupy module ----------------------------------------------------------------------
_HOST_IN = {"asarray", "array", "ascontiguousarray", "asfortranarray"}


def _function(f, name):
    if name in _HOST_IN:
        @functools.wraps(f)
        def host_in(a, *args, **kwargs):
            if not isinstance(a, ndarray):
                transfers["h2d"] += 1
            return _wrap(np.asarray(f(_unwrap(a, strict=False), *args, **kwargs)))
        return host_in

    @functools.wraps(f)
    def device(*args, **kwargs):
        if "out" in kwargs and kwargs["out"] is not None:
            out = kwargs["out"]
            kwargs["out"] = _unwrap(out)
            f(*_unwrap(args), **kwargs)
            return out
        return _wrap(f(*_unwrap(args), **kwargs))
    return device


def _namespace(name, source, extra=None):
    """A module ``name`` whose attributes are ``source``'s: functions and ufuncs working on
    device arrays, types and constants as they are."""
    mod = types.ModuleType(name)
    mod.__dict__.update(extra or {})

    def __getattr__(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        value = getattr(source, attr)
        if isinstance(value, types.ModuleType):
            raise AttributeError(f"cupy stand-in: {name}.{attr} is not offered")
        if isinstance(value, type) or not callable(value):
            return value                         # dtypes, exceptions, constants
        if callable(value):
            wrapped = _function(value, attr)
            setattr(mod, attr, wrapped)
            return wrapped

    mod.__getattr__ = __getattr__
    return mod


def asnumpy(a, stream=None, order="C", out=None):
    if isinstance(a, ndarray):
        return a.get()
    return np.asarray(a)


def get_array_module(*args):
    return cupy if any(isinstance(a, ndarray) for a in args) else np


class _Stream:
    def synchronize(self):
        _sync("Stream.synchronize")


class _Device:
    id = 0

    def __init__(self, device=0):
        self.id = device

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def synchronize(self):
        _sync("Device.synchronize")


_DEVICE = _Device()


def _raw_module(*args, **kwargs):
    raise RuntimeError("cupy stand-in: no CUDA kernels here; run with "
                       "hvpoison.kernels.use_kernels(False) (HVPOISON_KERNELS=0)")


cuda = types.ModuleType("cupy.cuda")
cuda.Stream = types.SimpleNamespace(null=_Stream())
cuda.Device = _Device
cuda.runtime = types.SimpleNamespace(
    getDeviceCount=lambda: 1, getDevice=lambda: 0, driverGetVersion=lambda: 0,
    runtimeGetVersion=lambda: 0,
    getDeviceProperties=lambda i: {"name": b"cupy stand-in (numpy)", "memoryClockRate": 0,
                                   "memoryBusWidth": 0})

cupy = _namespace("cupy", np, {
    "__version__": __version__, "ndarray": ndarray, "asnumpy": asnumpy,
    "get_array_module": get_array_module, "cuda": cuda, "RawModule": _raw_module,
    "RawKernel": _raw_module, "STANDIN": True, "transfers": transfers, "reset": reset})
cupy.linalg = _namespace("cupy.linalg", np.linalg)
cupy.random = _namespace("cupy.random", np.random)


# -- cupyx ---------------------------------------------------------------------------------
@contextlib.contextmanager
def allow_synchronize(allow):
    _sync_allowed.append(bool(allow))
    try:
        yield
    finally:
        _sync_allowed.pop()


class LinearOperator:
    """cupyx's: ``shape``, ``matvec`` on device vectors, ``dtype``."""

    def __init__(self, shape, matvec, dtype=None, **kwargs):
        self.shape, self.dtype, self._matvec = tuple(shape), np.dtype(dtype), matvec

    def matvec(self, x):
        y = self._matvec(x)
        if not isinstance(y, ndarray):
            raise TypeError(f"cupy stand-in: LinearOperator.matvec returned {type(y)}, not a "
                            "device array")
        return y


def _host_operator(op):
    if op is None:
        return None
    if not isinstance(op, LinearOperator):
        raise TypeError(f"cupy stand-in: cg takes a LinearOperator, got {type(op)}")
    return scipy.sparse.linalg.LinearOperator(
        op.shape, matvec=lambda x: op.matvec(ndarray(np.asarray(x).ravel()))._a,
        dtype=op.dtype)


def cg(A, b, x0=None, *, rtol=None, tol=None, atol=0.0, maxiter=None, M=None,
       callback=None):
    """cupyx's CG (its keywords: ``rtol``, or ``tol`` in older releases), run by SciPy on
    the wrapped arrays. cupyx reads the residual norm every iteration: one wait."""
    if not isinstance(b, ndarray) or (x0 is not None and not isinstance(x0, ndarray)):
        raise TypeError("cupy stand-in: cg needs device arrays b and x0")
    _sync("cg")
    rtol = 1e-5 if rtol is None and tol is None else (rtol if rtol is not None else tol)
    cb = None if callback is None else (lambda xk: callback(ndarray(xk)))
    x, info = scipy.sparse.linalg.cg(_host_operator(A), b._a, None if x0 is None else x0._a,
                                     rtol=rtol, atol=atol, maxiter=maxiter,
                                     M=_host_operator(M), callback=cb)
    return ndarray(np.asarray(x, dtype=b.dtype)), info


def solve_triangular(a, b, trans=0, lower=False, **kwargs):
    return _wrap(scipy.linalg.solve_triangular(_unwrap(a), _unwrap(b), trans=trans,
                                               lower=lower, **kwargs))


cupyx = types.ModuleType("cupyx")
cupyx.allow_synchronize = allow_synchronize
cupyx.DeviceSynchronized = DeviceSynchronized
cupyx.STANDIN = True
cupyx_scipy = types.ModuleType("cupyx.scipy")
cupyx_special = _namespace("cupyx.scipy.special", scipy.special)
cupyx_sparse = types.ModuleType("cupyx.scipy.sparse")
cupyx_sparse_linalg = types.ModuleType("cupyx.scipy.sparse.linalg")
cupyx_sparse_linalg.cg = cg
cupyx_sparse_linalg.LinearOperator = LinearOperator
cupyx_linalg = types.ModuleType("cupyx.scipy.linalg")
cupyx_linalg.solve_triangular = solve_triangular
cupyx.scipy = cupyx_scipy
cupyx_scipy.special, cupyx_scipy.sparse, cupyx_scipy.linalg = \
    cupyx_special, cupyx_sparse, cupyx_linalg
cupyx_sparse.linalg = cupyx_sparse_linalg

MODULES = {"cupy": cupy, "cupy.linalg": cupy.linalg, "cupy.random": cupy.random,
           "cupy.cuda": cuda, "cupyx": cupyx, "cupyx.scipy": cupyx_scipy,
           "cupyx.scipy.special": cupyx_special, "cupyx.scipy.sparse": cupyx_sparse,
           "cupyx.scipy.sparse.linalg": cupyx_sparse_linalg,
           "cupyx.scipy.linalg": cupyx_linalg}


@contextlib.contextmanager
def installed():
    """``cupy`` and ``cupyx`` are this stand-in inside the block (a real cupy, if imported,
    is put back afterwards); yields the stand-in ``cupy`` module, transfers reset."""
    saved = {k: sys.modules.get(k) for k in MODULES}
    sys.modules.update(MODULES)
    reset()
    try:
        yield cupy
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def main(argv=None):
    """``python tests/cupy_standin.py SCRIPT [ARGS...]``: run ``SCRIPT`` with this stand-in
    as ``cupy`` and the kernels off (``HVPOISON_KERNELS=0``): ``bench/gpu_check.sh``
    rehearses its GPU steps this way on a machine without a GPU."""
    import os
    import runpy

    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        raise SystemExit("usage: python tests/cupy_standin.py SCRIPT [ARGS...]")
    os.environ["HVPOISON_KERNELS"] = "0"
    sys.argv = list(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
    with installed():
        runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
