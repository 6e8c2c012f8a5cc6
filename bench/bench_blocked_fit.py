"""K Xavier starts of the GD victim trained one by one or as one blocked computation (issue 26).

Run:  python bench/bench_blocked_fit.py [--task mnist] [--repeat 5] [--batch-repeat 2]

On secml's protocol split (:mod:`attack_protocol`, ``n_tr = 1000``), the paper's MLP
``784-32-16-1`` with L2 (``lam = log 1e-3``) trained by the GD victim (``T = 200`` steps of
``eta = 0.1``) from ``K = 6`` fixed Xavier draws: ``K`` separate :meth:`GD.fit` runs against
one :meth:`GD.fit_many` (every step reads ``X`` once for all starts: ``X [W_1^1 ... W_1^K]``
and ``X^T [delta_1^1 ... delta_1^K]`` as single GEMMs), in float32 and float64, BLAS pinned
to one thread, the two alternated ``--repeat`` times (so that a change in the machine's
load hits both), the median reported. These trainings are what ``RMD.final`` scores every
4th iterate of ``method="strong"`` with (:func:`hvpoison.methods.strong_mlp`, 6 starts).

``--batch-repeat N`` (0: skip) also times one whole batch of the MLP's strong attack with the
blocked scoring and with the separate one (``GD.fit_many`` hidden, so ``RMD.final`` takes
its one-start-at-a-time path: the code before), alternated ``N`` times each. Prints markdown.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time

for _k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_k, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import attack_protocol as proto  # noqa: E402
from bench_attack import objective  # noqa: E402
from common import header  # noqa: E402

import hvpoison as hv  # noqa: E402
from hvpoison.experiments.protocol import ETA  # noqa: E402
from hvpoison.methods import strong_mlp  # noqa: E402
from hvpoison.victims import GD  # noqa: E402

K, T = 6, 200


@contextlib.contextmanager
def separate_fits():
    """``GD`` without ``fit_many`` for the duration: ``RMD.final`` then trains its fixed
    starts one by one, as before the blocked fit."""
    saved = GD.fit_many
    del GD.fit_many
    try:
        yield
    finally:
        GD.fit_many = saved


def fit_times(obj, X, y, dtype, eta, repeat):
    """``(separate seconds, blocked seconds, max relative difference)`` over ``repeat``
    alternated rounds."""
    X, y = X.astype(dtype), y.astype(dtype)
    data = obj.prepare(X, y, proto.LAM)
    W0 = np.stack([obj.model.init(s, dtype=dtype) for s in range(K)])
    gd = GD(T, eta)
    runs = {"separate": lambda: np.stack([gd.fit(obj, data, w0=w) for w in W0]),
            "blocked": lambda: gd.fit_many(obj, data, W0=W0)}
    got = {k: [] for k in runs}
    out = {}
    for r in range(repeat):
        for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            t0 = time.perf_counter()
            out[name] = runs[name]()
            got[name].append(time.perf_counter() - t0)
    diff = float(np.abs(out["blocked"] - out["separate"]).max() /
                 np.abs(out["separate"]).max())
    return got["separate"], got["blocked"], diff


def batch_times(sp, task, seed, repeat):
    """Seconds of one strong MLP batch, blocked scoring vs separate, alternated."""
    obj = objective("mlp", sp.Xtr.shape[1])

    def one():
        t0 = time.perf_counter()
        b = hv.attack(obj, sp.Xtr, sp.ytr, sp.Xval, sp.yval, n_poison=proto.N_POISON,
                      n_batches=1, lam=proto.LAM, box=(0.0, 1.0), seed=seed, T=T,
                      eta=ETA[task], victim="gd", method=strong_mlp())[-1]
        return time.perf_counter() - t0, b.trace["final"]

    got = {"blocked": [], "separate": []}
    finals = {}
    for r in range(repeat):
        for name in (["blocked", "separate"] if r % 2 == 0 else ["separate", "blocked"]):
            with separate_fits() if name == "separate" else contextlib.nullcontext():
                s, finals[name] = one()
            got[name].append(s)
            print(f"# batch {name}: {s:.1f} s", file=sys.stderr, flush=True)
    return got, finals


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="mnist", choices=proto.TASKS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batch-repeat", type=int, default=2)
    args = ap.parse_args(argv)
    sp = proto.split(args.task, args.seed)
    obj = objective("mlp", sp.Xtr.shape[1])
    lines = [header(), "", f"{args.task} seed {args.seed}, n = {sp.Xtr.shape[0]}, MLP "
             f"784-32-16-1, L2 lam = log 1e-3, K = {K} Xavier starts, T = {T}, eta = "
             f"{ETA[args.task]}; median of {args.repeat} alternated rounds:", "",
             "| dtype | K separate fits (s) | one blocked fit (s) | speed-up | "
             "max rel. diff of W_T | rounds separate / blocked (s) |", "|---|---|---|---|---|---|"]
    for dtype in (np.float32, np.float64):
        sep, blk, diff = fit_times(obj, sp.Xtr, sp.ytr, dtype, ETA[args.task], args.repeat)
        ms, mb = statistics.median(sep), statistics.median(blk)
        lines.append(f"| {np.dtype(dtype).name} | {ms:.3f} | {mb:.3f} | {ms / mb:.2f}x | "
                     f"{diff:.1e} | " + ", ".join(f"{s:.2f}" for s in sep) + " / " +
                     ", ".join(f"{s:.2f}" for s in blk) + " |")
        print(lines[-1], file=sys.stderr, flush=True)
    if args.batch_repeat:
        got, finals = batch_times(sp, args.task, args.seed, args.batch_repeat)
        mb, ms = statistics.median(got["blocked"]), statistics.median(got["separate"])
        lines += ["", f"one batch of method='strong' ({proto.N_POISON} points, "
                  f"strong_mlp(): 40 hyperiterations, 11 scorings of {K} starts), alternated "
                  f"{args.batch_repeat}x:", "", "| scoring | seconds (each round) | median | "
                  "trace['final'] |", "|---|---|---|---|",
                  *(f"| {k} | " + ", ".join(f"{s:.1f}" for s in v) +
                    f" | {statistics.median(v):.1f} | {finals[k]:.6f} |" for k, v in got.items()),
                  "", f"batch speed-up: {ms / mb:.2f}x"]
    print(*lines, sep="\n")


if __name__ == "__main__":
    main()
