"""Timing helpers and the machine/version header every benchmark records."""
from __future__ import annotations

import datetime
import os
import platform
import statistics
import time

import numpy as np


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


def header():
    import scipy

    try:
        from threadpoolctl import threadpool_info
        blas = "; ".join(f"{i.get('internal_api')} {i.get('version')} "
                         f"({i.get('architecture')}, {i.get('num_threads')} threads)"
                         for i in threadpool_info() if i.get("user_api") == "blas")
    except Exception:  # threadpoolctl is optional
        blas = "unknown (threadpoolctl not installed)"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"- date: {datetime.date.today().isoformat()}\n"
            f"- machine: {cpu}, {os.cpu_count()} cores\n"
            f"- python {platform.python_version()}, numpy {np.__version__}, "
            f"scipy {scipy.__version__}\n- BLAS: {blas}\n"
            f"- OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}\n")
