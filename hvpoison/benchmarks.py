"""Timing helpers and the engine micro-benchmark behind ``hvpoison bench``.

Speed is measured and recorded (``bench/RESULTS.md``), never asserted in tests. The scripts
in ``bench/`` add the peers (PyTorch, JAX) and more shapes; this module is what an installed
package can run anywhere: loss+gradient, ``H v``, the mixed product for 40 poisoning rows and
one RMD hypergradient (Alg. 1), for LR and the MLP.
"""
from __future__ import annotations

import datetime
import os
import platform
import statistics
import time

import numpy as np


def pin_one_cpu(cpu=None) -> int:
    """Restrict this process to one CPU (the last one it may use, or ``cpu``) and return it.

    Call it before a peer (JAX, PyTorch) starts its threads: a thread inherits the affinity
    of the thread that creates it, so every BLAS, XLA or OpenMP thread started afterwards
    shares that one core. Thread-count settings alone are not enough: JAX 0.10's XLA keeps
    using both cores of a 2-core box under ``--xla_cpu_multi_thread_eigen=false`` (CPU time
    / wall time 1.96 for one ``X @ W``); :func:`cpu_per_wall` shows which rows did. Linux
    only (``os.sched_setaffinity``); elsewhere a ``RuntimeError`` says so."""
    if not hasattr(os, "sched_setaffinity"):
        raise RuntimeError("pin_one_cpu: os.sched_setaffinity is not available on this "
                           "platform; pin the benchmark with the OS's own tool")
    cpu = max(os.sched_getaffinity(0)) if cpu is None else int(cpu)
    os.sched_setaffinity(0, {cpu})
    return cpu


def cpu_per_wall(fn, min_time=0.2) -> float:
    """Process CPU time over wall time while ``fn()`` runs repeatedly for ``min_time``
    seconds: about 1.0 for a row that runs on one core, up to the core count otherwise."""
    fn()
    wall, cpu, n = time.perf_counter(), time.process_time(), 0
    while n < 3 or time.perf_counter() - wall < min_time:
        fn()
        n += 1
    return (time.process_time() - cpu) / (time.perf_counter() - wall)


def median_time(fn, repeat=30, warmup=3, min_time=0.2):
    """Median seconds of ``fn()`` over ``repeat`` runs (at least ``min_time`` in total)."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeat or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if len(times) > 10 * repeat:
            break
    return statistics.median(times)


def header() -> str:
    """Date, CPU, core count, Python/numpy/scipy versions and BLAS, as Markdown bullets."""
    import scipy

    try:
        from threadpoolctl import threadpool_info
        blas = "; ".join(f"{i.get('internal_api')} {i.get('version')} "
                         f"({i.get('architecture')}, {i.get('num_threads')} threads)"
                         for i in threadpool_info() if i.get("user_api") == "blas")
    except Exception:  # noqa: BLE001 - threadpoolctl is optional: numpy's build record
        try:
            b = np.__config__.CONFIG["Build Dependencies"]["blas"]
            blas = f"{b['name']} {b['version']} (numpy's build; threads not known)"
        except Exception:  # noqa: BLE001
            blas = "unknown (threadpoolctl not installed)"
    extra = []
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("numba", "torch", "jax", "jaxlib", "cupy", "cupy-cuda13x", "cupy-cuda12x"):
        try:                                  # installed versions, without importing them
            extra.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            pass
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"- date: {datetime.date.today().isoformat()}\n"
            f"- machine: {cpu}, {os.cpu_count()} cores\n"
            f"- python {platform.python_version()}, numpy {np.__version__}, "
            f"scipy {scipy.__version__}" + "".join(", " + e for e in extra) +
            f"\n- BLAS: {blas}\n"
            f"- OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}\n")


def engine(n=1000, T=100, quick=False, dtype=np.float64, seed=0) -> list:
    """Rows ``(model, quantity, milliseconds)`` for LR 784 and MLP 784-32-16-1 on ``n`` rows."""
    import hvpoison as hv

    rng = np.random.default_rng(seed)
    rows = []
    repeat = 5 if quick else 30
    for model in (hv.LR(784), hv.MLP((784, 32, 16, 1))):
        name = "LR 784" if isinstance(model, hv.LR) else "MLP 784-32-16-1"
        obj = hv.Objective(model, "l2")
        X = rng.random((n, 784)).astype(dtype)
        y = (rng.random(n) < 0.5).astype(dtype)
        Xv, yv = X[:100].copy(), y[:100].copy()
        w = (0.05 * rng.normal(size=model.n_params)).astype(dtype)
        v = rng.normal(size=model.n_params).astype(dtype)
        lam, idx = -2.0, np.arange(40)
        pt = obj.at(w, X, y, lam)
        pt.grad()
        rows.append((name, "loss + gradient", 1e3 * median_time(
            lambda: obj.at(w, X, y, lam).grad(), repeat)))
        rows.append((name, "H v (fresh forward)", 1e3 * median_time(
            lambda: obj.hvp(w, X, y, lam, v), repeat)))
        rows.append((name, "H v, M_X^T v (40 rows), M_lam^T v", 1e3 * median_time(
            lambda: pt.hvp_mixed(v, rows=idx), repeat)))
        w0 = model.init(0, dtype=dtype)
        rows.append((name, f"RMD hypergradient (T = {T})", 1e3 * median_time(
            lambda: hv.rmd(obj, w0, X, y, idx, Xv, yv, lam, T, 0.1),
            max(3, repeat // 5), warmup=1, min_time=0)))
    return rows
