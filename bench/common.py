"""Timing helpers and the machine/version header every benchmark records (they live in
:mod:`hvpoison.benchmarks`, so ``hvpoison bench`` and these scripts share them)."""
from hvpoison.benchmarks import cpu_per_wall, header, median_time, pin_one_cpu  # noqa: F401


def merged_results(paths):
    """The result dicts of the JSON files ``paths`` merged (later files win on a key):
    the scripts' ``--report`` over runs split across processes."""
    import json

    merged = {}
    for path in paths:
        with open(path) as f:
            merged.update(json.load(f))
    return merged


def results_or_report(args, report):
    """The resumable result dict of a script with ``--json`` and ``--report``: None once
    ``--report`` has printed ``report`` of its files (default: ``--json``), else the results
    already in ``--json`` (empty when new; its folder made)."""
    import json
    import os

    if args.report is not None:
        print(report(merged_results(args.report or [args.json])))
        return None
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    if not os.path.exists(args.json):
        return {}
    with open(args.json) as f:
        return json.load(f)


def save_results(path, results):
    """Write ``results`` to ``path`` (after each finished run: an interrupted script
    resumes from it)."""
    import json

    with open(path, "w") as f:
        json.dump(results, f, indent=1)


def peer_net(shapes, leaky):
    """Our net for the autodiff peers (PyTorch, JAX), on the flat parameter vector in
    ``model.unpack``'s layout (per layer ``W_k`` row-major, then ``b_k``): ``f(w, A) ->
    (logits (n,), sum_k ||W_k||^2)`` for ``shapes`` ``[(fan_in, fan_out), ...]``
    (``model.shapes``), the hidden layers through the peer's Leaky ReLU ``leaky(z)``; the
    penalty is over the weights only, as ours."""
    def f(w, A):
        h, i, pen = A, 0, 0.0
        for k, (a, b) in enumerate(shapes):
            W = w[i:i + a * b].reshape(a, b)
            i += a * b
            h = h @ W + w[i:i + b]
            i += b
            pen = pen + (W * W).sum()
            if k < len(shapes) - 1:
                h = leaky(h)
        return h[:, 0], pen

    return f


def hvp_problem(kind, n, dtype, seed=0, k=0):
    """The HVP benchmarks' problem: ``(model, obj, X (n, 784), y (n,), w (P,), v (P,), V (P,
    k) or None)`` for ``kind`` "LR" or "MLP" (784-32-16-1), L2, uniform ``X``, small ``w``."""
    import numpy as np

    import hvpoison as hv

    rng = np.random.default_rng(seed)
    model = hv.LR(784) if kind == "LR" else hv.MLP((784, 32, 16, 1))
    X = rng.random((n, 784)).astype(dtype)
    y = (rng.random(n) < 0.5).astype(dtype)
    w = (0.05 * rng.normal(size=model.n_params)).astype(dtype)
    v = rng.normal(size=model.n_params).astype(dtype)
    V = rng.normal(size=(model.n_params, k)).astype(dtype) if k else None
    return model, hv.Objective(model, "l2"), X, y, w, v, V
