"""The paper's figures: each one is drawn from the summaries of the experiments it needs,
found in ``out`` (the committed ``reproduce/runs/`` included), and runs (or resumes) only
those whose summary is missing, or all of them when asked (``recompute``); it writes the
plotted numbers (``figN.json``) and the plot (``figN.png`` / ``.pdf``).

``reproduce(name, quick=False, out="reproduce/out", ...)`` is what ``reproduce/figN.py`` and
``hvpoison reproduce figN`` call; ``--quick`` shrinks every experiment to minutes on 2 cores
(the CI runs it), the full mode is the documented protocol. What each figure was drawn from
(redrawn, computed, left out) is said on stderr (:mod:`.summaries`).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from ..experiments import protocol
from . import fig1, lr, mlp
from .summaries import COMPUTE, REDRAW, plan, report

FIGURES = {name: f.description for name, f in protocol.FIGURES.items()}   # name -> what


def _say(line):
    print(line, file=sys.stderr, flush=True)


def _siblings(out, name):
    """The other experiment folders in ``out``: the L1 run of a figure copies its
    undefended records from the L2 run (and vice versa) instead of recomputing them."""
    out = Path(out)
    return sorted(p for p in out.iterdir() if p.is_dir() and p.name != name) \
        if out.is_dir() else []


def _gather(name, configs, out, run_options, tasks=None, recompute=False):
    """The summaries of figure ``name``'s experiments (``configs``) and their
    :class:`~.summaries.Source` s: each redrawn from its finished summary in ``out``, or run
    (resumed) when that is missing or ``recompute``; only ``tasks`` (all when None) run, the
    other tasks' finished runs of the same protocol are drawn too, so ``--tasks`` adds a
    panel instead of replacing the figure. ``run_options``: ``n_jobs``, ``data_dir``,
    ``progress`` of :func:`hvpoison.experiments.run`."""
    from ..experiments import run

    sources = plan(configs, out, tasks, recompute)        # a foreign folder: before any run
    for s in sources:
        if s.action == COMPUTE:
            _say(f"{name}: computing {s.exp.name} in {s.folder} ({s.why})")
            s.summary = run(s.exp, s.folder, reuse=_siblings(out, s.exp.name), **run_options)
    for s in sources:
        if s.summary is not None:
            s.summary["n_val"] = s.exp.data.n_val
    _say(report(name, sources, out))
    return [s.summary for s in sources if s.summary is not None], sources


def _dump(path, obj):
    def default(o):
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, np.generic):
            return o.item()
        raise TypeError(type(o).__name__)

    Path(path).write_text(json.dumps(obj, indent=1, default=default))


def _check_choice(name, tasks, attack):
    """``ValueError`` for an unknown figure, task or attack, before any work."""
    if name not in protocol.FIGURES:
        raise ValueError(f"FIGURE: expected one of {list(protocol.FIGURES)}, got {name!r}")
    protocol.FIGURES[name].experiments(attack=attack)
    for t in tasks:
        if t not in protocol.TASKS:
            raise ValueError(f"--tasks: expected entries from {list(protocol.TASKS)}, "
                             f"got {t!r}")


def reproduce(name, quick=False, out="reproduce/out", n_jobs=1, data_dir=None,
              progress=True, tasks=None, attack="alg2", recompute=False):
    """Draw figure ``name`` (a key of ``protocol.FIGURES``) and return ``(written files,
    seconds)``. Its numbers come from the finished summaries of its experiments in ``out``
    (redrawn, no dataset needed); an experiment whose summary is missing runs (resuming its
    records), and ``recompute=True`` runs every experiment of ``tasks`` (default: all
    three) again. Fig. 1 is redrawn from ``out/fig1.json`` likewise. ``attack="strong"``:
    the figure's experiments under ``method="strong"`` (figs. 2, 8, 6 and 11), drawn per
    victim beside the Alg. 2 runs finished in ``out`` (``figN-strong.png``)."""
    tasks = tuple(tasks or protocol.TASKS)  # run these; finished runs of the others are drawn
    _check_choice(name, tasks, attack)
    fig = protocol.FIGURES[name]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = out / (name + ("-strong" if attack == "strong" else "") + ("-quick" if quick else ""))
    t0 = time.perf_counter()
    if fig.kind == "fig1":
        return _fig1(base, quick, recompute), time.perf_counter() - t0
    run_options = {"n_jobs": n_jobs, "data_dir": data_dir, "progress": progress}
    extra = {}
    if fig.kind == "valsize":
        sums, sources = _gather(name, fig.experiments(quick), out, run_options,
                                recompute=recompute)
        extra = {"relative_decrease": {s["n_val"]: lr.relative_decrease(s) for s in sums}}
    else:
        sums, sources = _gather(name, fig.experiments(quick, attack=attack), out,
                                run_options, tasks, recompute)
    paths = _draw_strong(fig, sums, base, out, quick) if attack == "strong" else \
        _draw(fig, sums, base)
    _dump(f"{base}.json", {"figure": name, "quick": quick, "attack": attack,
                           "sources": {s.exp.name: s.action for s in sources},
                           "summaries": sums, **extra})
    return [f"{base}.json", *map(str, paths)], time.perf_counter() - t0


def _fig1(base, quick, recompute) -> list:
    """Fig. 1 from ``base.json`` when it holds this mode's settings (else ``ValueError``),
    computed (seconds, no dataset) when it is missing or ``recompute``; the files written."""
    path = Path(f"{base}.json")
    if path.is_file() and not recompute:
        res = fig1.load(path, quick)
        _say(f"fig1: {REDRAW} from {path} (not computed; --recompute to compute it again)")
    else:
        res = fig1.compute(quick)
        _dump(path, res)
        _say(f"fig1: {COMPUTE} into {path}" + (" (--recompute)" if recompute else ""))
    return [str(path), *map(str, fig1.plot(res, base))]


def _draw_strong(fig, sums, base, out, quick):
    """A strong-attack figure: a row per victim, the finished Alg. 2 runs dotted."""
    pen = fig.penalties[0]
    views = protocol.strong_views(sums)
    rows = {f"strong attack, {protocol.VICTIM_LABELS[v]}": [views[k] for k in views if
                                                          k[2] == v]
            for v, _ in protocol.STRONG[pen] if any(k[2] == v for k in views)}
    config, model = (protocol.mlp_config, "MLP " + "-".join(map(str, protocol.HIDDEN))) \
        if fig.kind == "mlp" else (protocol.lr_config, "LR")
    baseline = {}
    for b in plan([config(t, pen, quick) for t in protocol.TASKS], out, tasks=()):
        if b.summary is not None:
            baseline[b.exp.data.task] = b.summary
        elif b.why:
            _say(f"{fig.name}: the Alg. 2 run in {b.folder} is not dotted: {b.why}")
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
