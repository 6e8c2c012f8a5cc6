"""One batch of an attack on the CPU or the GPU: the wall time of a whole attack batch
(every hyperiteration's RMD through the victim's training, the outer steps, the final
evaluation), for the GPU-against-CPU comparison of issue #31.

Run:  python bench/bench_device_batch.py --device cpu|gpu [--model mlp|lr]
          [--method strong|alg2] [--iters K] [--T T] [--dtype float64|float32]

The problem is the attack protocol's first batch (``bench/attack_protocol.py``: 40 points
into ``n_tr = 1000`` rows, ``n_val = 100``, box ``[0, 1]``, L2 with ``lam = log 1e-3``) on
the MNIST 0-vs-8 subset embedded in the package (``mnist-mini``: no dataset files needed),
against the GD victim (``T`` steps of ``eta = 0.1``); the MLP is the paper's 784-32-16-1.
Prints one Markdown row: device, model, method, iterations, ``T``, dtype, the batch's wall
seconds (after a two-step warm-up that compiles the kernels), and the attacker's objective
(validation loss) at the first iterate and at the returned points.
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
import attack_protocol as proto  # noqa: E402
from common import header  # noqa: E402

import hvpoison as hv  # noqa: E402
from hvpoison.data import load_task  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "gpu"), required=True)
    ap.add_argument("--model", choices=("mlp", "lr"), default="mlp")
    ap.add_argument("--method", choices=("strong", "alg2"), default="strong")
    ap.add_argument("--iters", type=int, default=None, help="default: the method's")
    ap.add_argument("--T", type=int, default=200)
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-header", action="store_true")
    a = ap.parse_args()
    sp = load_task("mnist-mini", proto.N_TR, proto.N_VAL, 200, seed=a.seed, dtype=a.dtype)
    xp = hv.get_array_module(device=a.device)
    d = sp.Xtr.shape[1]
    model = hv.LR(d) if a.model == "lr" else hv.MLP((d, 32, 16, 1), 0.01)
    obj = hv.Objective(model, "l2")
    X, y, Xv, yv = (xp.asarray(v) for v in (sp.Xtr, sp.ytr, sp.Xval, sp.yval))
    kw = dict(n_poison=proto.N_POISON, n_batches=1, iters=a.iters, T=a.T, eta=0.1,
              lam=proto.LAM, box=(0.0, 1.0), seed=a.seed, method=a.method, victim="gd")
    hv.attack(obj, X, y, Xv, yv, **{**kw, "iters": 1, "T": 2})      # warm-up: compile, cache
    if xp is not np:
        xp.cuda.Device().synchronize()
    t0 = time.perf_counter()
    batch = hv.attack(obj, X, y, Xv, yv, **kw)[-1]
    if xp is not np:
        xp.cuda.Device().synchronize()
    secs = time.perf_counter() - t0
    tr = batch.trace
    if not a.no_header:
        print(header())
        print("| device | model | method | iterations | T | dtype | seconds | objective: first "
              "iterate / returned |\n|---|---|---|---|---|---|---|---|")
    print(f"| {a.device} | {a.model} | {a.method} | {len(tr['outer'])} | {a.T} | {a.dtype} | "
          f"{secs:.2f} | {tr['outer'][0]:.4f} / {tr['final']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
