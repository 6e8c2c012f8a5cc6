"""HVP micro-benchmark on the CPU: loss+gradient, ``H v`` and ``hvp_xw`` (issue #2).

Run:  python bench/bench_hvp.py [--quick] [--torch]  > bench/out/hvp.md

For each shape and dtype it reports the median time of
- ``loss+grad``: one forward pass and one backward pass (``Objective.at(...).grad()``),
- ``H v (fresh)``: a forward pass plus the R pass (``Objective.hvp``),
- ``H v (shared)``: the R pass alone on a kept forward tape (what Alg. 1's reverse step pays),
- ``hvp_xw rows``: the mixed product for 40 poisoning rows on a kept tape,
and the ratio ``H v (fresh) / loss+grad`` (targets: <= 2 for LR, <= 2.5 for the MLP).
With ``--torch`` (needs PyTorch), ``torch.func`` forward-over-reverse HVPs on the same
shapes, threads and dtype, and the ratio ours / torch.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import hvpoison as hv  # noqa: E402
from common import header, median_time, peer_net  # noqa: E402

SHAPES = [("LR", 784), ("LR", 3072), ("MLP", (784, 32, 16, 1)), ("MLP", (784, 100, 50, 1)),
          ("MLP", (3072, 100, 50, 1))]


def problem(kind, spec, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    model = hv.LR(spec) if kind == "LR" else hv.MLP(spec)
    obj = hv.Objective(model, "l2")
    X = rng.random((n, model.n_features)).astype(dtype)
    y = (rng.random(n) < 0.5).astype(dtype)
    w = (0.05 * rng.normal(size=model.n_params)).astype(dtype)
    v = rng.normal(size=model.n_params).astype(dtype)
    return model, obj, X, y, w, v


def torch_hvp_time(kind, spec, X, y, w, v, lam):
    import torch
    from torch.func import grad, jvp

    tX, ty = torch.from_numpy(X), torch.from_numpy(y)
    tw, tv = torch.from_numpy(w), torch.from_numpy(v)
    sizes = (spec, 1) if kind == "LR" else spec
    f = peer_net(list(zip(sizes[:-1], sizes[1:])),
                 lambda z: torch.nn.functional.leaky_relu(z, 0.01))

    def loss(w_):
        z, pen = f(w_, tX)
        return torch.nn.functional.binary_cross_entropy_with_logits(z, ty) + 0.5 * np.exp(lam) * pen

    def hvp():
        return jvp(grad(loss), (tw,), (tv,))[1]

    with torch.no_grad():
        return median_time(hvp)


def run(quick=False, use_torch=False, n=1000):
    lam = -2.0
    print("# HVP micro-benchmark (CPU)\n")
    print(header())
    print(f"n = {n}, L2 penalty, median of repeated runs after warm-up; times in ms.\n")
    cols = "| model | dtype | loss+grad | H v (fresh) | ratio | H v (shared) | hvp_xw 40 rows |"
    if use_torch:
        cols += " torch.func H v | ours / torch |"
    print(cols)
    print("|" + "---|" * (cols.count("|") - 1))
    for kind, spec in (SHAPES[:1] + SHAPES[2:3] if quick else SHAPES):
        for dtype in (np.float64, np.float32):
            model, obj, X, y, w, v = problem(kind, spec, n, dtype)
            lam_ = np.asarray(lam, dtype=dtype)[()]
            pt = obj.at(w, X, y, lam_)
            pt.grad()
            rows = np.arange(40)
            out = np.empty_like(w)
            t_g = median_time(lambda: obj.at(w, X, y, lam_).grad())
            t_h = median_time(lambda: obj.hvp(w, X, y, lam_, v))
            t_hs = median_time(lambda: pt.hvp(v, out=out))
            t_x = median_time(lambda: pt.hvp_mixed(v, rows=rows, out=out))
            name = kind + ("-".join(map(str, spec)) if kind == "MLP" else f" d={spec}")
            line = (f"| {name} | {np.dtype(dtype).name} | {1e3 * t_g:.3f} | {1e3 * t_h:.3f} | "
                    f"{t_h / t_g:.2f} | {1e3 * t_hs:.3f} | {1e3 * t_x:.3f} |")
            if use_torch:
                t_t = torch_hvp_time(kind, spec, X, y, w, v, lam)
                line += f" {1e3 * t_t:.3f} | {t_h / t_t:.2f} |"
            print(line, flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two shapes only")
    ap.add_argument("--torch", action="store_true", help="also time torch.func HVPs")
    ap.add_argument("-n", type=int, default=1000)
    a = ap.parse_args()
    run(a.quick, a.torch, a.n)
