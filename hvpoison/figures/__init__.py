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

from . import fig1, lr, mlp

FIGURES = {
    "fig1": "synthetic 2-D: decision boundaries, validation-error maps, best-lam map",
    "fig2": "LR, L2: test error vs poisoning fraction (none / large / cv / learned), 3 tasks",
    "fig3": "LR: learned lam and ||w||^2/P vs fraction, L2 and L1, 3 tasks",
    "fig4": "LR, L2, MNIST: sensitivity to the validation size, relative error decrease",
    "fig5": "LR, L2: Kuncheva's index of the top-k features vs fraction, 3 tasks",
    "fig8": "LR, L1: test error vs poisoning fraction, 3 tasks",
    "fig9": "LR, L1, MNIST: sensitivity to the validation size",
    "fig10": "LR, L1: Kuncheva's index vs fraction, 3 tasks",
    "fig6": "MLP, L2: test error vs fraction (none / large / learned / learned per layer)",
    "fig7": "MLP, L2: learned lam per layer vs fraction",
    "fig11": "MLP, L1: test error vs fraction",
    "fig12": "MLP, L1: learned lam per layer vs fraction",
    "fig13": "MLP, L2: ||W_k||^2/P_k per layer vs fraction",
    "fig14": "MLP, L1: ||W_k||^2/P_k per layer vs fraction",
}
MLP_FIGURES = {"fig6": ("l2", "error"), "fig7": ("l2", "lam"), "fig13": ("l2", "norm"),
               "fig11": ("l1", "error"), "fig12": ("l1", "lam"), "fig14": ("l1", "norm")}


def _finished(exp, folder):
    """The summary of ``exp`` in ``folder`` if a run of this very protocol (same
    fingerprint) finished there, else None."""
    try:
        meta = json.loads((folder / "experiment.json").read_text())
        s = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return s if s.get("complete") and meta.get("fingerprint") == exp.fingerprint() else None


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
        elif (s := _finished(exp, Path(out) / exp.name)) is None:
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
              progress=True, tasks=None):
    """Run figure ``name`` (a key of ``FIGURES``) on ``tasks`` (default: all three);
    returns ``(written files, seconds)``."""
    if name not in FIGURES:
        raise ValueError(f"FIGURE: expected one of {list(FIGURES)}, got {name!r}")
    tasks = tuple(tasks or lr.TASKS)     # run these; finished runs of the others are drawn too
    for t in tasks:
        if t not in lr.TASKS:
            raise ValueError(f"--tasks: expected entries from {list(lr.TASKS)}, got {t!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = out / (name + ("-quick" if quick else ""))
    t0 = time.perf_counter()
    if name == "fig1":
        res = fig1.compute(quick)
        _dump(f"{base}.json", res)
        paths = fig1.plot(res, base)
    elif name in MLP_FIGURES:
        penalty, kind = MLP_FIGURES[name]
        sums = _run_all(mlp.experiments(quick, lr.TASKS, (penalty,)), out, n_jobs, data_dir,
                        progress, tasks)
        title = f"MLP {'-'.join(map(str, mlp.HIDDEN))}, {penalty.upper()}: "
        if kind == "error":
            paths = lr.plot_error(sums, base, title + "test error under the optimal attack")
        elif kind == "lam":
            paths = mlp.plot_lam_layers(sums, base, title + "learned λ per layer")
        else:
            paths = mlp.plot_norm_layers(sums, base, title + "||W_k||²/P_k per layer")
        _dump(f"{base}.json", {"figure": name, "quick": quick, "summaries": sums})
    else:
        penalty = "l1" if name in ("fig8", "fig9", "fig10") else "l2"
        if name in ("fig4", "fig9"):
            sums = _run_all(lr.valsize_experiments(quick, penalty=penalty), out, n_jobs,
                            data_dir, progress)
            paths = lr.plot_valsize(sums, base, f"LR, {penalty.upper()}, MNIST: size of the "
                                    "trusted validation set")
            extra = {"relative_decrease": {s["n_val"]: lr.relative_decrease(s) for s in sums}}
        elif name == "fig3":
            sums = _run_all(lr.experiments(quick, lr.TASKS), out, n_jobs, data_dir, progress,
                            tasks)
            paths = []
            for pen in ("l2", "l1"):
                sel = [s for s in sums if s["penalty"] == pen]
                paths += lr.plot_lam_norm(sel, f"{base}-{pen}",
                                          f"LR, {pen.upper()}: learned λ and ||w||²/P")
            extra = {}
        else:
            sums = _run_all(lr.experiments(quick, lr.TASKS, (penalty,)), out, n_jobs,
                            data_dir, progress, tasks)
            if name in ("fig2", "fig8"):
                paths = lr.plot_error(sums, base, f"LR, {penalty.upper()}: test error "
                                      "under the optimal attack")
            else:
                paths = lr.plot_kuncheva(sums, base, f"LR, {penalty.upper()}: stability of "
                                         "the top-k features")
            extra = {}
        _dump(f"{base}.json", {"figure": name, "quick": quick, "summaries": sums, **extra})
    return [f"{base}.json", *map(str, paths)], time.perf_counter() - t0
