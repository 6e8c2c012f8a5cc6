"""Two checkouts of hvpoison side by side: RMD (Alg. 1, T = 100) for LR 1000x784 and the MLP
784-32-16-1, and one ``H v`` at a fresh point, each timed in alternating subprocesses on one
BLAS thread (issue 16: "RMD no slower than today after the refactor").

Run:  python bench/bench_versions.py OLD_TREE NEW_TREE [--rounds 5]

``OLD_TREE`` / ``NEW_TREE``: folders holding a ``hvpoison/`` package (``git archive <commit> |
tar -x -C /tmp/old``), put first on ``PYTHONPATH`` of their subprocess. Each round runs
every case in both trees, old then new, then new then old, so drift of this shared machine
falls on both; the table gives each tree's median over the rounds and new / old.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CASE = r"""
import json, sys, time
import numpy as np
import hvpoison as hv
from threadpoolctl import threadpool_limits
kind, what = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
d, n, m = 784, 1000, 100
model = hv.LR(d) if kind == "LR" else hv.MLP((d, 32, 16, 1))
obj = hv.Objective(model, "l2")
X, Xv = rng.random((n, d)), rng.random((m, d))
y, yv = (rng.random(n) < 0.5) * 1.0, (rng.random(m) < 0.5) * 1.0
w0 = model.init(0)
v = rng.normal(size=model.n_params)
if what == "rmd":
    f = lambda: hv.rmd(obj, w0, X, y, np.arange(40), Xv, yv, -2.0, 100, 0.1)
else:
    f = lambda: obj.hvp(w0, X, y, -2.0, v)
with threadpool_limits(1):
    f()
    times = []
    for _ in range(7 if what == "rmd" else 30):
        t = time.perf_counter(); f(); times.append(time.perf_counter() - t)
print(json.dumps(sorted(times)[len(times) // 2]))
"""

CASES = [("LR", "rmd"), ("MLP", "rmd"), ("LR", "hvp"), ("MLP", "hvp")]


def once(tree, kind, what):
    env = dict(os.environ, PYTHONPATH=tree, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", CASE, kind, what], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    times = {(t, c): [] for t in ("old", "new") for c in CASES}
    for r in range(args.rounds):
        order = [("old", args.old), ("new", args.new)]
        for label, tree in (order if r % 2 == 0 else order[::-1]):
            for c in CASES:
                times[(label, c)].append(once(tree, *c))
    print("| case | old (ms) | new (ms) | new / old |\n|---|---|---|---|")
    for c in CASES:
        old, new = (1e3 * statistics.median(times[(t, c)]) for t in ("old", "new"))
        name = f"{c[0]} {'RMD T = 100' if c[1] == 'rmd' else 'H v, fresh point (obj.hvp)'}"
        print(f"| {name} | {old:.2f} | {new:.2f} | {new / old:.2f} |", flush=True)


if __name__ == "__main__":
    main()
