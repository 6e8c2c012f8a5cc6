"""The Exact victim's Newton solver on CIFAR-10's shape (P = 3073), dense Cholesky against
Woodbury preconditioners, side by side in one run (issue 17's CIFAR-10 runs).

Usage: OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python bench/bench_newton.py
       [--data-dir ../shared/datasets] [--n 200 1000]

For each n: ``Exact().fit`` from zeros at the L2 lam of the protocol (0), then a warm refit
after moving 40 rows a little (what Alg. 2 asks of it every hyperiteration); the dense
path is forced by hiding the point's Hessian factor. Prints a Markdown table.
"""
import argparse
import time

import numpy as np

import hvpoison as hv
from hvpoison.benchmarks import header
from hvpoison.data import load_task
from hvpoison.victims import Exact, Newton


def timed(dense, obj, X, y, X2, lam):
    solver = Exact(tol=1e-9).solver()
    if dense:                               # the path before: no factor, a dense H
        real = Newton.rebuild

        def rebuild(self, point):
            point.hessian_factor = lambda: None
            real(self, point)
        solver.rebuild = rebuild.__get__(solver)
    t0 = time.perf_counter()
    w, _ = solver.minimize(lambda w: obj.at(w, X, y, lam), np.zeros(obj.model.n_params))
    t1 = time.perf_counter()
    w2, _ = solver.minimize(lambda w: obj.at(w, X2, y, lam), w)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, w2


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--n", type=int, nargs="+", default=[200, 1000])
    a = ap.parse_args()
    print(header())
    print("| n | path | fit from zeros (s) | warm refit (s) | max abs diff of w |")
    print("|---|---|---|---|---|")
    for n in a.n:
        s = load_task("cifar10", n, None, 100, seed=0, data_dir=a.data_dir)
        obj = hv.Objective(hv.LR(s.Xtr.shape[1]), "l2")
        X2 = s.Xtr.copy()
        X2[:40] = np.clip(X2[:40] + 0.02 * np.random.default_rng(0).normal(size=X2[:40].shape),
                          -1, 1)
        res = {p: timed(p == "dense", obj, s.Xtr, s.ytr, X2, 0.0) for p in ("dense", "woodbury")}
        diff = float(np.abs(res["dense"][2] - res["woodbury"][2]).max())
        for p, (t_fit, t_warm, _) in res.items():
            print(f"| {n} | {p} | {t_fit:.2f} | {t_warm:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
