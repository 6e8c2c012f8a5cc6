"""The MLP's strong attack against the recipe it replaced, timed side by side (issue 26).

Run:  python bench/bench_mlp_strong_time.py [--task mnist] [--seed 0] [--batches 1]

On secml's protocol (:mod:`attack_protocol`: ``n_tr = 1000``, 40 points a batch, box
``[0, 1]``, ``lam = log 1e-3``), the paper's MLP ``784-32-16-1`` against the GD victim
(``T = 200``, the task's ``eta``): the first ``--batches`` batches of
``method="strong"`` (:func:`hvpoison.methods.strong_mlp`) and of the recipe it replaced
(``bench_attack.OLD_STRONG_MLP``: float64 RMD, Alg. 2's step, 100 hyperiterations) and a
leaner ``strong_mlp`` (``bench_attack.LEAN_STRONG_MLP``: 32 hyperiterations, every 8th
iterate scored), one after
the other in one process, BLAS pinned to one thread, the order alternated over ``--repeat``
rounds so that a change in the machine's load hits every recipe. Prints a markdown table; the
attack-strength comparison (every batch, scored by retraining) is ``bench_attack.py --model
mlp --attacks strong/gd old-strong/gd``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

for _k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_k, "1")

sys.path.insert(0, os.path.dirname(__file__))
import attack_protocol as proto  # noqa: E402
from bench_attack import LEAN_STRONG_MLP, OLD_STRONG_MLP, objective  # noqa: E402
from common import header  # noqa: E402

import hvpoison as hv  # noqa: E402
from hvpoison.experiments.protocol import ETA  # noqa: E402
from hvpoison.methods import strong_mlp  # noqa: E402


def timed(method, sp, task, seed, batches):
    """Seconds of ``batches`` batches of ``method``."""
    obj = objective("mlp", sp.Xtr.shape[1])
    t0 = time.perf_counter()
    hv.attack(obj, sp.Xtr, sp.ytr, sp.Xval, sp.yval, n_poison=proto.N_POISON,
                  n_batches=batches, lam=proto.LAM, box=(0.0, 1.0), seed=seed, T=200,
                  eta=ETA[task], victim="gd", method=method)
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="mnist", choices=proto.TASKS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batches", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)
    sp = proto.split(args.task, args.seed)
    recipes = {"strong (strong_mlp)": strong_mlp(), "the replaced recipe": OLD_STRONG_MLP,
               "lean (32 hyperiterations, every 8th scored)": LEAN_STRONG_MLP}
    got = {k: [] for k in recipes}
    for r in range(args.repeat):
        for name in (list(recipes) if r % 2 == 0 else list(recipes)[::-1]):
            got[name].append(timed(recipes[name], sp, args.task, args.seed, args.batches))
            print(f"# {name}: {got[name][-1]:.1f} s", file=sys.stderr, flush=True)
    best = {k: min(v) for k, v in got.items()}
    old = best["the replaced recipe"]
    print(header(), "", f"{args.task} seed {args.seed}, {args.batches} batch(es) of "
          f"{proto.N_POISON} points, best of {args.repeat}:", "",
          "| recipe | seconds (each round) |", "|---|---|",
          *(f"| {k} | " + ", ".join(f"{s:.1f}" for s in v) + " |" for k, v in got.items()),
          "", *(f"- {k}: {old / s:.2f}x faster than the replaced recipe (best of each)"
                for k, s in best.items() if k != "the replaced recipe"), sep="\n")


if __name__ == "__main__":
    main()
