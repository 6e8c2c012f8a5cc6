"""``H v`` against JAX on one CPU thread: fused fresh-point and blocked products (issue 16).

Run:  python bench/bench_hvp_jax.py [--quick] [--model LR|MLP]  > bench/out/hvp-jax.md

LR 784 and MLP 784-32-16-1 at n = 10^3, 10^4, 10^5 (``--quick``: the first two), float64
and float32, every row in one process pinned to one CPU (``pin_one_cpu``, before JAX
starts its threads), BLAS to one thread (environment and threadpoolctl) and XLA to one
thread (``XLA_FLAGS`` set before JAX is imported). XLA's flags alone do not hold JAX 0.10 to
one core: the "cpu/wall" column (process CPU time over wall time, :func:`cpu_per_wall`)
shows that every row ran on one. Rows:

- ``ours fresh``: today's path at a fresh point, forward + deltas + ``rop``
  (``Point.hvp`` on data checked once: ``Objective.linearize``);
- ``ours fresh fused``: ``Objective.hvp_fresh`` (what ``obj.hvp`` runs): ``forward_r``
  (``X [W_1 V_1]``, one GEMM) + ``sigmoid_ce`` + ``backward_r(out_g=None)`` (deltas + ``X^T
  R delta_1``) + the penalty: two reads of ``X`` (LR, one direction: ``ops.lr_hvp_fresh``,
  one read with its numba twin);
- ``ours fresh grad+H v`` / ``fused``: the gradient and ``H v`` at one fresh point, by a
  point (``grad()`` then ``hvp``) and fused (``hvp_fresh(..., with_grad=True)``);
- ``ours shared``: the R pass alone on a kept tape (``Point.hvp``, deltas formed);
- ``ours blocked k=8 shared``: ``Point.hvp_block`` for 8 directions on the kept tape (one
  blocked R pass); "per dir." divides by 8 and the last column is 8 single shared products
  over it;
- ``ours blocked k=8 fresh``: ``Objective.hvp_fresh`` with ``V`` ``(P, 8)``;
- ``jax fresh``: ``jit(jvp(grad(loss)))``; ``jax vmap k=8``: ``jit(vmap(hvp))`` over 8
  directions at one fresh point.

The JAX loss is ours: mean sigmoid cross-entropy plus ``0.5 exp(lam) ||W||^2`` over the
weights only (biases unpenalised), on the flat vector laid out as ``model.unpack``; its
``H v`` and ``H V`` are checked against ours (relative 1e-6 in float64, 1e-3 in float32)
before anything is timed. "ours / jax" compares each of our rows with the JAX row doing
the same work (fresh single: ``jax fresh``; fresh k=8: ``jax vmap``).
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"                   # before numpy (and BLAS) are loaded
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
                           ).strip()

import argparse  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from common import cpu_per_wall, header, hvp_problem, median_time, peer_net, pin_one_cpu  # noqa: E402

LAM, K = -2.0, 8


def ours(kind, n, dtype):
    """``(results, timings)``: our H v / H V for the check, and ms per row."""
    model, obj, X, y, w, v, V = hvp_problem(kind, n, dtype, k=K)
    data = obj.prepare(X, y, LAM)                   # checked once, as Alg. 1's loops do

    def make(w_):
        return obj.linearize(w_, data)

    def fresh():
        return make(w).hvp(v)

    def fresh_fused(V_=v):
        return obj.hvp_fresh(w, data, V_)

    def grad_hv():
        p = make(w)
        return p.grad(), p.hvp(v)

    def grad_hv_fused():
        return obj.hvp_fresh(w, data, v, with_grad=True)

    shared_pt = make(w)
    shared_pt.hvp(v)                         # the deltas are formed once, then kept
    out1 = np.empty_like(w)

    def shared():
        return shared_pt.hvp(v, out=out1)

    def blocked_shared():
        return shared_pt.hvp_block(V)

    results = {"fresh": fresh().copy(), "fused": fresh_fused().copy(),
               "blocked": blocked_shared().copy(), "blocked_fresh": fresh_fused(V).copy()}
    repeat = 10 if n >= 100_000 else 30
    t = {}
    for name, fn in [("ours fresh", fresh), ("ours fresh fused", fresh_fused),
                     ("ours fresh grad+H v", grad_hv), ("ours fresh grad+H v fused", grad_hv_fused),
                     ("ours shared", shared), (f"ours blocked k={K} shared", blocked_shared),
                     (f"ours blocked k={K} fresh", lambda: fresh_fused(V))]:
        t[name] = (1e3 * median_time(fn, repeat=repeat), cpu_per_wall(fn))
    return (model, X, y, w, v, V), results, t


def jax_rows(model, X, y, w, v, V, dtype, n):
    import jax
    import jax.numpy as jnp

    lam_e = float(np.exp(LAM))
    f = peer_net(model.shapes, lambda z: jnp.where(z > 0, z, getattr(model, "slope", 0.0) * z))

    def loss(w_, X_, y_):
        z, pen = f(w_, X_)                           # pen: weights only, biases unpenalised
        return jnp.mean(jnp.logaddexp(0.0, z) - y_ * z) + 0.5 * lam_e * pen

    def hvp(w_, v_, X_, y_):
        return jax.jvp(lambda u: jax.grad(loss)(u, X_, y_), (w_,), (v_,))[1]

    single = jax.jit(hvp)
    block = jax.jit(jax.vmap(hvp, in_axes=(None, 1, None, None), out_axes=1))
    Xj, yj, wj, vj, Vj = (jnp.asarray(a) for a in (X, y, w, v, V))
    assert Xj.dtype == dtype
    res = {"single": np.asarray(single(wj, vj, Xj, yj)), "block": np.asarray(block(wj, Vj, Xj, yj))}
    repeat = 10 if n >= 100_000 else 30
    rows = {"jax fresh": lambda: single(wj, vj, Xj, yj).block_until_ready(),
            f"jax vmap k={K}": lambda: block(wj, Vj, Xj, yj).block_until_ready()}
    t = {name: (1e3 * median_time(fn, repeat=repeat), cpu_per_wall(fn))
         for name, fn in rows.items()}
    return res, t


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="n = 10^3 and 10^4 only")
    ap.add_argument("--model", choices=("LR", "MLP"), action="append",
                    help="only this model (repeatable; default both)")
    a = ap.parse_args()
    cpu = pin_one_cpu()                               # before JAX starts its threads
    import jax

    jax.config.update("jax_enable_x64", True)       # float64 rows; float32 inputs stay float32
    print("# H v against JAX, one thread each (issue 16, blocked and fused products)\n")
    print(header().rstrip())
    print(f"- jax {jax.__version__} on {jax.devices()[0].platform}; XLA_FLAGS="
          f"`{os.environ['XLA_FLAGS']}`; BLAS pinned to 1 thread (threadpoolctl); the "
          f"process pinned to CPU {cpu}")
    print("- L2 penalty, lam = -2; median ms after warm-up; k = 8 for the block rows\n")
    print("| model | n | dtype | row | ms | ms / dir. | ours / jax | cpu/wall | note |")
    print("|---|---|---|---|---|---|---|---|---|")
    for kind in a.model or ("LR", "MLP"):
        name = "LR 784" if kind == "LR" else "MLP 784-32-16-1"
        for n in ((1000, 10_000) if a.quick else (1000, 10_000, 100_000)):
            for dtype in (np.float64, np.float32):
                with threadpool_limits(1):
                    (model, X, y, w, v, V), mine, t = ours(kind, n, dtype)
                    theirs, tj = jax_rows(model, X, y, w, v, V, dtype, n)
                tol = 1e-6 if dtype == np.float64 else 1e-3
                errs = {"fresh": rel(mine["fresh"], theirs["single"]),
                        "fused": rel(mine["fused"], theirs["single"]),
                        "blocked": rel(mine["blocked"], theirs["block"]),
                        "blocked_fresh": rel(mine["blocked_fresh"], theirs["block"])}
                bad = {k: e for k, e in errs.items() if not e <= tol}
                if bad:
                    raise SystemExit(f"{name} n={n} {np.dtype(dtype).name}: ours != jax {bad}")
                dt = np.dtype(dtype).name
                ref = {"ours fresh": "jax fresh", "ours fresh fused": "jax fresh",
                       f"ours blocked k={K} fresh": f"jax vmap k={K}"}
                ms_of = {row: ms for row, (ms, _) in list(t.items()) + list(tj.items())}
                for row, (ms, load) in list(t.items()) + list(tj.items()):
                    k = K if f"k={K}" in row else 1
                    ratio = f"{ms / ms_of[ref[row]]:.2f}" if row in ref else ""
                    note = ""
                    if row == f"ours blocked k={K} shared":
                        note = f"{K} single shared / block = {K * ms_of['ours shared'] / ms:.2f}x"
                    elif row == "ours fresh fused":
                        note = f"today / fused = {ms_of['ours fresh'] / ms:.2f}x"
                    elif row == "ours fresh grad+H v fused":
                        note = f"today / fused = {ms_of['ours fresh grad+H v'] / ms:.2f}x"
                    elif row == "jax fresh":
                        note = f"max rel diff ours-jax {max(errs.values()):.1e}"
                    print(f"| {name} | {n} | {dt} | {row} | {ms:.3f} | {ms / k:.3f} | "
                          f"{ratio} | {load:.2f} | {note} |", flush=True)


if __name__ == "__main__":
    main()
