"""The paper's figures: each one runs (or resumes) the experiments it needs, writes their
results, the plotted numbers (``figN.json``) and the plot (``figN.png`` / ``.pdf``).

``reproduce(name, quick=False, out="reproduce/out", ...)`` is what ``reproduce/figN.py`` and
``hvpoison reproduce figN`` call; ``--quick`` shrinks every experiment to minutes on 2 cores
(the CI runs it), the full mode is the documented protocol.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..experiments import Store, protocol
from . import fig1, lr, mlp

FIGURES = {name: f.description for name, f in protocol.FIGURES.items()}   # name -> what


def _siblings(out, name):
    """The other experiment folders in ``out``: the L1 run of a figure copies its
    undefended records from the L2 run (and vice versa) instead of recomputing them."""
    out = Path(out)
    return sorted(p for p in out.iterdir() if p.is_dir() and p.name != name) \
        if out.is_dir() else []


def _run_all(configs, out, n_jobs, data_dir, progress, tasks=None):
    """Run (or resume) the experiments of ``tasks`` (all when None); the other tasks'
    experiments are drawn too when a finished run of the same protocol is in ``out``, so
    ``--tasks`` adds a panel instead of replacing the figure."""
    from ..experiments import Experiment, run

    summaries = []
    for cfg in configs:
        exp = Experiment.from_dict(cfg)
        if tasks is None or exp.data.task in tasks:
            s = run(exp, Path(out) / exp.name, n_jobs=n_jobs, data_dir=data_dir,
                    progress=progress, reuse=_siblings(out, exp.name))
        elif (s := Store(Path(out) / exp.name).finished(exp)) is None:
            continue
        s["n_val"] = exp.data.n_val
        summaries.append(s)
    return summaries


def _dump(path, obj):
    def default(o):
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, np.generic):
            return o.item()
        raise TypeError(type(o).__name__)

    Path(path).write_text(json.dumps(obj, indent=1, default=default))


def reproduce(name, quick=False, out="reproduce/out", n_jobs=1, data_dir=None,
              progress=True, tasks=None, attack="alg2"):
    """Run figure ``name`` (a key of ``protocol.FIGURES``) on ``tasks`` (default: all
    three) and draw it; returns ``(written files, seconds)``. ``attack="strong"``: the
    figure's experiments under ``method="strong"`` (figs. 2, 8, 6 and 11), drawn per victim
    beside the Alg. 2 runs finished in ``out`` (``figN-strong.png``)."""
    if name not in protocol.FIGURES:
        raise ValueError(f"FIGURE: expected one of {list(protocol.FIGURES)}, got {name!r}")
    fig = protocol.FIGURES[name]
    fig.experiments(attack=attack)                       # a bad --attack: before any work
    tasks = tuple(tasks or protocol.TASKS)  # run these; finished runs of the others are drawn
    for t in tasks:
        if t not in protocol.TASKS:
            raise ValueError(f"--tasks: expected entries from {list(protocol.TASKS)}, "
                             f"got {t!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = out / (name + ("-strong" if attack == "strong" else "") + ("-quick" if quick else ""))
    t0 = time.perf_counter()
    if fig.kind == "fig1":
        res = fig1.compute(quick)
        _dump(f"{base}.json", res)
        return [f"{base}.json", *map(str, fig1.plot(res, base))], time.perf_counter() - t0
    extra = {}
    if fig.kind == "valsize":
        sums = _run_all(fig.experiments(quick), out, n_jobs, data_dir, progress)
        extra = {"relative_decrease": {s["n_val"]: lr.relative_decrease(s) for s in sums}}
    else:
        sums = _run_all(fig.experiments(quick, attack=attack), out, n_jobs, data_dir,
                        progress, tasks)
    paths = _draw_strong(fig, sums, base, out, quick) if attack == "strong" else \
        _draw(fig, sums, base)
    _dump(f"{base}.json", {"figure": name, "quick": quick, "attack": attack,
                           "summaries": sums, **extra})
    return [f"{base}.json", *map(str, paths)], time.perf_counter() - t0


def _draw_strong(fig, sums, base, out, quick):
    """A strong-attack figure: a row per victim, the finished Alg. 2 runs dotted."""
    from ..experiments import Experiment

    pen = fig.penalties[0]
    views = protocol.strong_views(sums)
    rows = {f"strong attack, {protocol.VICTIM_LABELS[v]}": [views[k] for k in views if
                                                          k[2] == v]
            for v, _ in protocol.STRONG[pen] if any(k[2] == v for k in views)}
    config, model = (protocol.mlp_config, "MLP " + "-".join(map(str, protocol.HIDDEN))) \
        if fig.kind == "mlp" else (protocol.lr_config, "LR")
    baseline = {}
    for t in protocol.TASKS:
        exp = Experiment.from_dict(config(t, pen, quick))
        if (s := Store(Path(out) / exp.name).finished(exp)) is not None:
            baseline[t] = s
    return lr.plot_error_victims(rows, base, f"{model}, {pen.upper()}: the strongest attack "
                                 "found, per victim", baseline)


def _draw(fig, sums, base):
    """The plot of ``fig`` (its ``plot`` kind) from the experiments' summaries."""
    pen = fig.penalties[0].upper()
    if fig.kind == "mlp":
        title = f"MLP {'-'.join(map(str, protocol.HIDDEN))}, {pen}: "
        if fig.plot == "error":
            return lr.plot_error(sums, base, title + "test error under the optimal attack")
        if fig.plot == "lam":
            return mlp.plot_lam_layers(sums, base, title + "learned λ per layer")
        return mlp.plot_norm_layers(sums, base, title + "||W_k||²/P_k per layer")
    if fig.plot == "valsize":
        return lr.plot_valsize(sums, base, f"LR, {pen}, MNIST: size of the trusted "
                               "validation set")
    if fig.plot == "lam_norm":
        paths = []
        for p in fig.penalties:
            sel = [s for s in sums if s["penalty"] == p]
            paths += lr.plot_lam_norm(sel, f"{base}-{p}", f"LR, {p.upper()}: learned λ and "
                                      "||w||²/P")
        return paths
    if fig.plot == "error":
        return lr.plot_error(sums, base, f"LR, {pen}: test error under the optimal attack")
    return lr.plot_kuncheva(sums, base, f"LR, {pen}: stability of the top-k features")
