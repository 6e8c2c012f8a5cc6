"""One RMD hypergradient (Alg. 1): wall time, peak memory and cost in gradient-equivalents
per memory strategy (issue #3), optionally against PyTorch autograd through the unrolled loop.

Run:  python bench/bench_rmd.py [--quick] [--torch] [--jax] [--one-cpu]

Cost in gradient-equivalents per step = time / (T * time of one loss+gradient).
Peak memory is the tracemalloc peak of numpy allocations during one call.
``--jax``: JAX's ``jit(grad(lax.scan))`` through the same unrolled loop (its ``dXp`` is
checked against ours first). ``--one-cpu``: the process and every peer thread on one CPU
and BLAS on one thread (:func:`pin_one_cpu`; XLA's thread flags alone still use two cores).
"""
from __future__ import annotations

import argparse
import os
import sys
import tracemalloc

if "--one-cpu" in sys.argv:                   # before numpy (and BLAS) are loaded
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import hvpoison as hv  # noqa: E402
from common import cpu_per_wall, header, median_time, peer_net, pin_one_cpu  # noqa: E402


def problem(kind, n=1000, m=100, d=784, seed=0):
    rng = np.random.default_rng(seed)
    model = hv.LR(d) if kind == "LR" else hv.MLP((d, 32, 16, 1))
    obj = hv.Objective(model, "l2")
    X, Xv = rng.random((n, d)), rng.random((m, d))
    y, yv = (rng.random(n) < 0.5) * 1.0, (rng.random(m) < 0.5) * 1.0
    return obj, X, y, Xv, yv, np.arange(40), model.init(0)


def torch_rmd(kind, obj, X, y, Xv, yv, idx, w0, lam, T, eta):
    import torch

    tX, ty, tXv, tyv = map(torch.from_numpy, (X, y, Xv, yv))
    e = float(np.exp(lam))
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    slope = getattr(obj.model, "slope", 0.0)
    f = peer_net(obj.model.shapes, lambda z: torch.nn.functional.leaky_relu(z, slope))

    def hypergrad():
        Xp = tX[idx].clone().requires_grad_(True)
        rest = tX.clone()
        A = torch.index_put(rest, (torch.from_numpy(idx),), Xp)
        w = torch.from_numpy(w0.copy()).requires_grad_(True)
        for _ in range(T):
            z, pen = f(w, A)
            L = bce(z, ty) + 0.5 * e * pen
            (g,) = torch.autograd.grad(L, w, create_graph=True)
            w = w - eta * g
        zv, _ = f(w, tXv)
        return torch.autograd.grad(bce(zv, tyv), Xp)[0]

    return median_time(hypergrad, repeat=5, warmup=1, min_time=0)


def jax_rmd(kind, obj, X, y, Xv, yv, idx, w0, lam, T, eta, ours):
    """``(seconds, cpu/wall)`` of JAX's ``jit(grad(...))`` through ``lax.scan`` over the ``T``
    steps, float64; its ``dXp`` must match ``ours`` (relative 1e-8) before it is timed."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    e, slope = float(np.exp(lam)), getattr(obj.model, "slope", 0.0)
    f = peer_net(obj.model.shapes, lambda z: jnp.where(z > 0, z, slope * z))

    def bce(z, t):
        return jnp.mean(jnp.logaddexp(0.0, z) - t * z)

    jX, jy, jXv, jyv, jw0 = map(jnp.asarray, (X, y, Xv, yv, w0))
    jidx = jnp.asarray(idx)

    def outer(Xp):
        A = jX.at[jidx].set(Xp)

        def inner(u):
            z, pen = f(u, A)
            return bce(z, jy) + 0.5 * e * pen

        def step(w, _):
            return w - eta * jax.grad(inner)(w), None

        wT, _ = jax.lax.scan(step, jw0, None, length=T)
        return bce(f(wT, jXv)[0], jyv)

    hypergrad = jax.jit(jax.grad(outer))
    Xp = jnp.asarray(X[idx])
    got = np.asarray(hypergrad(Xp))
    err = np.linalg.norm(got - ours) / np.linalg.norm(ours)
    if not err <= 1e-8:
        raise SystemExit(f"{kind} T={T}: JAX's dXp differs from ours (relative {err:.1e})")
    fn = lambda: hypergrad(Xp).block_until_ready()  # noqa: E731
    return median_time(fn, repeat=7, warmup=1, min_time=0), cpu_per_wall(fn, 0.5)


def run(quick=False, use_torch=False, use_jax=False):
    lam, eta = -2.0, 0.1
    print("# RMD hypergradient benchmark (CPU, float64)\n")
    print(header())
    print("n = 1000, n_val = 100, n_p = 40 poisoning rows, L2, median wall time.\n")
    cols = "| model | T | memory | time (ms) | grad-equiv. / step | peak MB | stored states |"
    if use_torch:
        cols += " torch autograd (ms) | torch / ours |"
    if use_jax:
        cols += " jax jit(grad(scan)) (ms) | ours / jax | cpu/wall ours, jax |"
    print(cols)
    print("|" + "---|" * (cols.count("|") - 1))
    for kind in ("LR", "MLP"):
        obj, X, y, Xv, yv, idx, w0 = problem(kind)
        t_grad = median_time(lambda: obj.at(w0, X, y, lam).grad())
        for T in ((100,) if quick else (100, 500)):
            for memory in ("store", "checkpoint", "reverse"):
                call = lambda: hv.rmd(obj, w0, X, y, idx, Xv, yv, lam, T, eta,  # noqa: E731
                                      memory=memory)
                t = median_time(call, repeat=7, warmup=1, min_time=0)
                tracemalloc.start()
                info = call().info
                peak = tracemalloc.get_traced_memory()[1] / 2**20
                tracemalloc.stop()
                line = (f"| {kind} | {T} | {memory} | {1e3 * t:.1f} | {t / (T * t_grad):.2f} | "
                        f"{peak:.1f} | {info['stored_states']} |")
                if use_torch and memory == "store":
                    tt = torch_rmd(kind, obj, X, y, Xv, yv, idx, w0, lam, T, eta)
                    line += f" {1e3 * tt:.1f} | {tt / t:.2f} |"
                elif use_torch:
                    line += " | |"
                if use_jax and memory == "store":
                    tj, load = jax_rmd(kind, obj, X, y, Xv, yv, idx, w0, lam, T, eta,
                                       call().dXp)
                    line += f" {1e3 * tj:.1f} | {t / tj:.2f} | {cpu_per_wall(call, 0.5):.2f}, " \
                            f"{load:.2f} |"
                elif use_jax:
                    line += " | | |"
                print(line, flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="T = 100 only")
    ap.add_argument("--torch", action="store_true", help="also time PyTorch autograd")
    ap.add_argument("--jax", action="store_true", help="also time JAX jit(grad(lax.scan))")
    ap.add_argument("--one-cpu", action="store_true",
                    help="pin the process (and the peers' threads) to one CPU, BLAS to 1 thread")
    a = ap.parse_args()
    if a.one_cpu:
        print(f"(pinned to CPU {pin_one_cpu()})\n")
    run(a.quick, a.torch, a.jax)
