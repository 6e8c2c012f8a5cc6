"""HVP throughput and one RMD hypergradient, CPU and GPU, with autodiff peers (issue #5).

Run:  python bench/bench_throughput.py [--quick] [--peers] [--gpu] [--twins] [--no-cpu]
          [--budget SECONDS] > bench/out/throughput.md

Rows: LR 784 and MLP 784-32-16-1 at n = 1000, 10^4, 10^5, float32 and float64, on
- ``numpy``: the CPU reference (this machine's BLAS threads);
- ``numpy+numba``: the same with the numba twins of the element-wise steps (when installed);
- ``cupy ref`` / ``cupy kernels``: the GPU with the CUDA kernels off / on (``--gpu``);
- peers with ``--peers`` when installed: ``torch.func`` forward-over-reverse HVP and
  ``jax.jvp(jax.grad)`` on the same device and dtype.
Columns: median ms per HVP on a fresh point (forward + R pass, inputs checked once), HVPs/s,
and for LR the achieved GB/s (an HVP must read X twice: ``2 n d`` elements) and GFLOP/s
(``8 n d``), plus one RMD hypergradient (T = 100, 40 poisoning rows, ``n = 1000``) for LR and the MLP, and one
hyperiteration of Alg. 2 (LR, the paper's MNIST sizes). A first table times each numba twin
against its numpy reference: that table decides which twins exist (``kernels/cpu.py``).

``--no-cpu`` leaves out the numpy rows, the twins' table and ``torch.func`` on the CPU (on
a GPU machine, whose CPU is not the one the CPU rows describe). ``--budget S``: HVP rows
that would start after ``S`` seconds are listed as skipped instead of timed (the RMD table,
a few seconds, always runs; ``bench/gpu_check.sh`` keeps the GPU run inside its slot this
way).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import hvpoison as hv  # noqa: E402
from common import header, hvp_problem, median_time, peer_net  # noqa: E402
from hvpoison import ops  # noqa: E402

#: hvpoison.kernels, installed or (a plain checkout on PYTHONPATH, as bench/gpu_check.sh
#: runs it) the repository's kernels/ folder loaded under that name
K = ops._kernels()


def problem(kind, n, dtype, xp, seed=0):
    model, obj, *arrays, _ = hvp_problem(kind, n, dtype, seed)
    return model, obj, *(xp.asarray(a) for a in arrays)


def sync(xp):
    """Wait for the device (every stream), so a timing covers the queued work."""
    if xp is not np:
        xp.cuda.Device().synchronize()


def kernel_switch(on):
    """``use_kernels(on)``: CUDA kernels on the GPU, numba twins on the CPU."""
    return K.use_kernels(on)


def _numba():
    return bool(K.cpu_twins())


def twin_table():
    """ms of each numba twin against its numpy reference, at the engine's sizes."""
    cpu = K.cpu

    rng = np.random.default_rng(0)
    cases = []
    for n in (1000, 10_000, 100_000):
        z, y = rng.normal(size=n) * 3, (rng.random(n) < 0.5).astype(float)
        cases.append(("sigmoid_ce (Alg. 1 step)", f"n = {n}", (z, y, False), None))
        cases.append(("sigmoid_ce with loss", f"n = {n}", (z, y, True), None))
    for n, m in ((1000, 32), (1000, 16), (10_000, 32), (100_000, 32)):
        for dt in (np.float64, np.float32):
            Z, b = rng.normal(size=(n, m)).astype(dt), rng.normal(size=m).astype(dt)
            cases.append(("bias_leaky_relu", f"{n} x {m} {np.dtype(dt).name}", (b, 0.01), Z))
    for n, d in ((40, 784), (200, 784), (200, 3072)):
        Xp, g = rng.random((n, d)), rng.normal(size=(n, d))
        cases.append(("ascent_project", f"{n} x {d}", (g, 0.3, 0.0, 1.0), Xp))
    for n in (1000, 10_000, 100_000):     # LR's R pass and forward step: two reads of X or one
        for dt in (np.float64, np.float32):
            X = rng.random((n, 784)).astype(dt)
            curv, v = rng.random(n).astype(dt), rng.normal(size=785).astype(dt)
            cases.append(("lr_rop", f"{n} x 784 {np.dtype(dt).name}",
                          (X, curv, v, np.empty(785, dt)), None))
            y, w = (rng.random(n) < 0.5).astype(dt), (0.03 * v).astype(dt)
            cases.append(("lr_forward_grad (a training step)", f"{n} x 784 "
                          f"{np.dtype(dt).name}", (X, y, w, np.empty(785, dt)), None))
    print("| step | size | numpy (us) | numba (us) | numpy / numba |\n|---|---|---|---|---|")
    for name, size, args, inplace in cases:
        key = name.split(" ")[0]
        times = []
        for f in (ops.REFERENCE[key], cpu.TWINS[key]):
            if inplace is None:
                times.append(median_time(lambda: f(np, *args)))
            else:                   # in-place steps: time on a fresh copy, minus the copy
                copy = median_time(lambda: inplace.copy())
                times.append(median_time(lambda: f(np, inplace.copy(), *args)) - copy)
        print(f"| {name} | {size} | {1e6 * times[0]:.1f} | {1e6 * times[1]:.1f} | "
              f"{times[0] / times[1]:.2f} |", flush=True)
    print()


def time_ours(kind, n, dtype, xp, on=None):
    """One ``H v`` at a fresh point: forward + backward deltas + R pass, on inputs checked
    once (as the peers get theirs); ``obj.hvp`` would also check X for NaN every call."""
    model, obj, X, y, w, v = problem(kind, n, dtype, xp)
    data = obj.prepare(X, y, -2.0)

    def once():
        obj.linearize(w, data).hvp(v)
        sync(xp)

    with kernel_switch(on):
        return median_time(once, repeat=10, min_time=0.3)


def time_torch(kind, n, dtype, device):
    import torch
    from torch.func import grad, jvp

    model, _, X, y, w, v = problem(kind, n, dtype, np)
    t = {k: torch.as_tensor(a, device=device) for k, a in dict(X=X, y=y, w=w, v=v).items()}
    f = peer_net(model.shapes, lambda z: torch.nn.functional.leaky_relu(z, 0.01))

    def loss(w_):
        z, pen = f(w_, t["X"])
        return (torch.nn.functional.binary_cross_entropy_with_logits(z, t["y"])
                + 0.5 * np.exp(-2.0) * pen)

    def once():
        jvp(grad(loss), (t["w"],), (t["v"],))
        if device != "cpu":
            torch.cuda.synchronize()

    return median_time(once, repeat=10, min_time=0.3)


def _jax_platform():
    """``cpu`` or ``gpu``: where JAX puts its arrays (its default device)."""
    try:
        import jax
    except ImportError:
        return ""
    return jax.devices()[0].platform


def time_jax(kind, n, dtype):
    """``jax.jit(jvp(grad))`` on JAX's default device, the data passed as arguments (a
    closed-over ``X`` would be compiled in as a constant)."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", dtype == np.float64)
    model, _, X, y, w, v = problem(kind, n, dtype, np)
    f = peer_net(model.shapes, lambda z: jnp.where(z > 0, z, 0.01 * z))

    def loss(w_, X_, y_):
        z, pen = f(w_, X_)
        return jnp.mean(jnp.logaddexp(0, z) - y_ * z) + 0.5 * np.exp(-2.0) * pen

    hvp = jax.jit(lambda w_, v_, X_, y_: jax.jvp(lambda u: jax.grad(loss)(u, X_, y_),
                                                  (w_,), (v_,))[1])
    wj, vj, Xj, yj = (jax.device_put(jnp.asarray(a)) for a in (w, v, X, y))
    return median_time(lambda: hvp(wj, vj, Xj, yj).block_until_ready(), repeat=10,
                       min_time=0.3)


#: the inner step of the RMD rows: stable on these uniform [0, 1]^784 rows (LR's L ~ 49 at
#: w = 0, so 2 / L ~ 0.04; 0.1, used before 2026-12-04, diverged: same cost, but the attack
#: now refuses a step at which no lam trains)
ETA = 0.02


def rmd_time(kind, xp, dtype):
    model, obj, X, y, w, v = problem(kind, 1000, dtype, xp)
    rows = xp.arange(40)
    w0 = xp.asarray(model.init(0, dtype=dtype))

    def once():
        hv.rmd(obj, w0, X, y, rows, X[:100], y[:100], -2.0, 100, ETA)
        sync(xp)

    return median_time(once, repeat=5, min_time=0.5)


def hyperiteration_time(xp, dtype):
    """One hyperiteration of Alg. 2 (LR, n = 1000, 40 poisoning rows, T = 100, learned
    ``lam``): the difference of 4 and 1 hyperiterations, over 3 (cancels the batch's set-up
    and its final evaluation); only batch 1 runs (``start``: no clean batch 0)."""
    model, obj, X, y, w, v = problem("LR", 1000, dtype, xp)

    def run(k):
        hv.attack(obj, X, y, X[:100], y[:100], n_poison=40, n_batches=1, iters=k, T=100,
                  eta=ETA, lam=-4.0, learn_lam=True, box=(0.0, 1.0), start=(0, X, y))
        sync(xp)

    return (median_time(lambda: run(4), repeat=3, min_time=0.5)
            - median_time(lambda: run(1), repeat=3, min_time=0.5)) / 3


class Budget:
    """Seconds left of ``--budget``: :meth:`left` is False once they are spent."""

    def __init__(self, seconds):
        self.end = None if seconds is None else time.perf_counter() + seconds
        self.skipped = 0

    def left(self):
        if self.end is None or time.perf_counter() < self.end:
            return True
        self.skipped += 1
        return False


def peer_rows(kind, n, dtype, a):
    """``[(name, seconds or a reason it was not timed)]`` of the autodiff peers."""
    peers = [] if a.no_cpu else [("torch.func cpu", lambda: time_torch(kind, n, dtype, "cpu"))]
    peers.append((f"jax {_jax_platform()}", lambda: time_jax(kind, n, dtype)))
    if a.gpu:
        peers.append(("torch.func cuda", lambda: time_torch(kind, n, dtype, "cuda")))
    rows = []
    for name, fn in peers:
        try:
            rows.append((name, fn()))
        except ImportError as exc:                 # a peer that is not installed
            rows.append((name, f"not installed ({exc.name})"))
        except Exception as exc:  # noqa: BLE001 - a peer without this device: say so
            rows.append((name, f"failed: {type(exc).__name__}: {str(exc)[:80]}"))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="n = 1000 and 10^4 only")
    ap.add_argument("--peers", action="store_true", help="also torch.func and jax")
    ap.add_argument("--gpu", action="store_true", help="also cupy (reference and kernels)")
    ap.add_argument("--twins", action="store_true", help="only the numba twins' table")
    ap.add_argument("--no-cpu", action="store_true",
                    help="no numpy rows, no twins' table, no torch.func on the CPU")
    ap.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                    help="list HVP rows that would start after SECONDS as skipped")
    a = ap.parse_args()
    if a.twins:
        print(header())
        return twin_table() if _numba() else print("numba is not installed: no twins")
    budget = Budget(a.budget)
    kernels = K.enabled()           # HVPOISON_KERNELS=0: no twin or kernel rows
    backends = [] if a.no_cpu else [("numpy", np, False)]
    if _numba() and not a.no_cpu and kernels:
        backends.append(("numpy+numba", np, True))
    if a.gpu:
        import cupy

        backends += [("cupy ref", cupy, False)] + ([("cupy kernels", cupy, True)] if kernels
                                                   else [])
    if not backends:
        ap.error("--no-cpu without --gpu leaves nothing to time")
    print("# HVP throughput and RMD (issue #5)\n")
    print(header())
    if a.gpu:
        import cupy

        p = cupy.cuda.runtime.getDeviceProperties(0)
        # peak DRAM bandwidth = 2 (DDR) x memory clock x bus width; the LR rows' GB/s
        # against it is the "within 2x of the bandwidth bound" target of issue #5
        peak = 2 * p.get("memoryClockRate", 0) * 1e3 * p.get("memoryBusWidth", 0) / 8 / 1e9
        name = p["name"].decode() if isinstance(p["name"], bytes) else p["name"]
        print(f"- GPU: {name}, driver {cupy.cuda.runtime.driverGetVersion()}, CUDA runtime "
              f"{cupy.cuda.runtime.runtimeGetVersion()}, cupy {cupy.__version__}, peak memory "
              f"bandwidth about {peak:.0f} GB/s\n")
    if _numba() and not a.no_cpu and kernels:
        twin_table()
    print("| model | n | dtype | backend | ms / HVP | HVPs/s | GB/s | GFLOP/s |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in ("LR", "MLP"):
        for n in ((1000, 10_000) if a.quick else (1000, 10_000, 100_000)):
            for dtype in (np.float64, np.float32):
                if not budget.left():
                    print(f"| {kind} | {n} | {np.dtype(dtype).name} | (all) | skipped: "
                          f"--budget {a.budget:g} s spent | | | |", flush=True)
                    continue
                rows = [(name, time_ours(kind, n, dtype, xp, on)) for name, xp, on in backends]
                if a.peers:
                    rows += peer_rows(kind, n, dtype, a)
                item = np.dtype(dtype).itemsize
                for name, t in rows:
                    if isinstance(t, str):
                        print(f"| {kind} | {n} | {np.dtype(dtype).name} | {name} | {t} | | | |")
                        continue
                    gb = f"{2 * n * 784 * item / t / 1e9:.1f}" if kind == "LR" else ""
                    gf = f"{8 * n * 784 / t / 1e9:.1f}" if kind == "LR" else ""
                    print(f"| {kind} | {n} | {np.dtype(dtype).name} | {name} | {1e3 * t:.3f} | "
                          f"{1 / t:.0f} | {gb} | {gf} |", flush=True)
    print("\n| backend, float64 | RMD LR 1000x784, T = 100 (ms) | RMD MLP 784-32-16-1 (ms) | "
          "Alg. 2 hyperiteration, LR (ms) |\n|---|---|---|---|")
    for name, xp, on in backends:     # not skipped: a few seconds, and the targets' rows
        with kernel_switch(on):
            t = [rmd_time("LR", xp, np.float64), rmd_time("MLP", xp, np.float64),
                 hyperiteration_time(xp, np.float64)]
        print(f"| {name} | " + " | ".join(f"{1e3 * x:.1f}" for x in t) + " |", flush=True)
    if budget.skipped:
        print(f"\n{budget.skipped} group(s) of rows skipped: --budget {a.budget:g} s was spent")


if __name__ == "__main__":
    main()
