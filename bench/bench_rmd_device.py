"""One RMD hypergradient (Alg. 1) on the CPU or the GPU as the training set grows: where a
GPU starts to pay (issue #31).

Run:  python bench/bench_rmd_device.py --device cpu|gpu [--sizes 1000 10000 100000]
          [--T 100] [--dtype float64 float32] [--models LR MLP] [--budget SECONDS]

Rows: LR 784 and the MLP 784-32-16-1 (L2, ``lam = -2``), ``n`` uniform ``[0, 1]`` rows, 40
poisoning rows, the validation set the first 100 rows, ``T`` steps of ``eta = 0.02`` from
``initW``, ``memory="store"``; median seconds of ``hv.rmd`` (which ends with one wait for
the device), after one warm-up call. The GPU runs with the CUDA kernels on
(``HVPOISON_KERNELS=0``: off). ``--budget``: rows that would start after that many seconds
are listed as skipped.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

for _k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_k, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from common import header, hvp_problem, median_time  # noqa: E402

import hvpoison as hv  # noqa: E402

ETA = 0.02      # stable on these rows (bench_throughput.ETA)


def rmd_seconds(kind, n, dtype, xp, T):
    model, obj, X, y, *_ = hvp_problem(kind, n, dtype)
    X, y = xp.asarray(X), xp.asarray(y)
    rows = xp.arange(40)
    w0 = xp.asarray(model.init(0, dtype=dtype))

    def once():
        hv.rmd(obj, w0, X, y, rows, X[:100], y[:100], -2.0, T, ETA)   # value: one wait

    return median_time(once, repeat=3, warmup=1, min_time=0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "gpu"), required=True)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--T", type=int, default=100)
    ap.add_argument("--dtype", nargs="+", default=["float64", "float32"],
                    choices=("float64", "float32"))
    ap.add_argument("--models", nargs="+", default=["LR", "MLP"], choices=("LR", "MLP"))
    ap.add_argument("--budget", type=float, default=None, metavar="SECONDS")
    a = ap.parse_args()
    xp = hv.get_array_module(device=a.device)
    end = None if a.budget is None else time.perf_counter() + a.budget
    print(header())
    print(f"| device | model | n | dtype | RMD, T = {a.T} (ms) | ms per step (forward + "
          "reverse) |\n|---|---|---|---|---|---|")
    for kind in a.models:
        for n in a.sizes:
            for dt in a.dtype:
                if end is not None and time.perf_counter() > end:
                    print(f"| {a.device} | {kind} | {n} | {dt} | skipped: --budget "
                          f"{a.budget:g} s spent | |", flush=True)
                    continue
                s = rmd_seconds(kind, n, np.dtype(dt), xp, a.T)
                print(f"| {a.device} | {kind} | {n} | {dt} | {1e3 * s:.1f} | "
                      f"{1e3 * s / a.T:.3f} |", flush=True)


if __name__ == "__main__":
    main()
