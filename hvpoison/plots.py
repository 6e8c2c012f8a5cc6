"""Plots of an experiment's ``summary.json`` (matplotlib, headless). Reads results, never
recomputes them.

:func:`plot_summary` draws, against the poisoning fraction: the test error per lam setting
with error bars (± std over repetitions); the learned lam (one line per layer for
``learned_per_layer``); ``||W_k||^2/P_k``; and Kuncheva's index for each ``k``.
"""
from __future__ import annotations

import json
from pathlib import Path

COLORS = {"none": "#d62728", "large": "#7f7f7f", "cv": "#ff7f0e", "learned": "#1f77b4",
          "learned_per_layer": "#2ca02c"}
# lam_CV often lands on "no penalty" and then hides the red line: draw it dashed and hollow
STYLES = {"cv": {"ls": "--", "marker": "s", "mfc": "none"}}
LABELS = {"none": "λ = −∞ (none)", "large": "large constant λ", "cv": "λ_CV (clean data)",
          "learned": "learned λ", "learned_per_layer": "learned λ per layer"}


def style(setting) -> dict:
    """Matplotlib keywords (colour, label, line style) that draw ``setting`` the same way in
    every figure."""
    return {"color": COLORS.get(setting), "label": LABELS.get(setting, setting),
            **STYLES.get(setting, {})}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11,
                         "legend.fontsize": 9, "axes.grid": True, "grid.alpha": 0.3,
                         "axes.spines.top": False, "axes.spines.right": False})
    return plt


def save(fig, path, formats=("png", "pdf"), dpi=130) -> list:
    """Write ``fig`` to ``path`` + ``.png``/``.pdf`` (creating the folder); returns paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        p = path.with_name(f"{path.name}.{fmt}")
        fig.savefig(p, dpi=dpi)
        paths.append(p)
    return paths


def load_summary(path) -> dict:
    """A ``summary.json``, or the one inside a results folder."""
    p = Path(path)
    if p.is_dir():
        p = p / "summary.json"
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise ValueError(f"RESULTS: expected a results folder or summary.json, got {str(path)!r} "
                         "(no summary.json there; run the experiment first)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: not valid JSON: {exc}") from None


def _pct(ax):
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.set_xlabel("fraction of poisoning points")


def _series(ax, t, metric, comp, **kw):
    import numpy as np

    x = np.array(t["fraction"])
    mu = np.array([m[comp] for m in t[metric]["mean"]])
    sd = np.array([s[comp] for s in t[metric]["std"]])
    ax.errorbar(x, mu, yerr=sd, capsize=3, **{"marker": "o", "ms": 4, "lw": 1.6, **kw})


def plot_summary(summary, out, formats=("png", "pdf")) -> list:
    """Write the four-panel figure of ``summary`` (a dict or a path) to ``out`` + each
    format; returns the written paths."""
    if not isinstance(summary, dict):
        summary = load_summary(summary)
    plt = _pyplot()
    settings = summary["settings"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)
    ax = axes[0, 0]
    for s, t in settings.items():
        _series(ax, t, "test_error", 0, **style(s))
    ax.set_ylabel("test error")
    ax.set_title("Test error under attack")
    ax.legend()
    ax = axes[0, 1]
    styles = ["-", "--", ":", "-."]
    for s, t in settings.items():
        if "lam" in t and s.startswith("learned"):
            for c in range(len(t["lam"]["mean"][0])):
                lab = LABELS.get(s, s) + (f", layer {c + 1}" if len(t["lam"]["mean"][0]) > 1
                                          else "")
                _series(ax, t, "lam", c, color=COLORS.get(s), ls=styles[c % 4], label=lab)
    ax.set_ylabel("learned λ (log scale)")
    ax.set_title("Learned regularisation")
    if ax.lines:
        ax.legend()
    ax = axes[1, 0]
    for s, t in settings.items():
        n_layers = len(t["w_norm2"]["mean"][0])
        for c in range(n_layers):
            lab = LABELS.get(s, s) + (f", layer {c + 1}" if n_layers > 1 else "")
            _series(ax, t, "w_norm2", c, color=COLORS.get(s), ls=styles[c % 4], label=lab)
    ax.set_yscale("log")
    ax.set_ylabel("||w||² / P")
    ax.set_title("Weight norm")
    ax.legend()
    ax = axes[1, 1]
    ks = sorted({m.split("@")[1] for t in settings.values() for m in t if m.startswith("kuncheva@")},
                key=int)
    for s, t in settings.items():
        for i, k in enumerate(ks):
            if f"kuncheva@{k}" in t:
                _series(ax, t, f"kuncheva@{k}", 0, color=COLORS.get(s), ls=styles[i % 4])
    ax.set_ylabel("Kuncheva's consistency index")
    ax.set_title("Stability of the selected features")
    if ks:      # colours are the settings (as in the other panels); line styles the k
        from matplotlib.lines import Line2D

        ax.legend([Line2D([], [], color="k", ls=styles[i % 4]) for i in range(len(ks))],
                  [f"top {k} features" for k in ks], loc="lower left")
    fracs = max((t["fraction"] for t in settings.values()), key=len)
    for a in axes.flat:
        _pct(a)
        a.set_xticks(fracs)
    fig.suptitle(f"{summary.get('name', '')}: {summary['model'].upper()} on {summary['task']}, "
                 f"{summary['penalty'].upper()} penalty", fontsize=13)
    paths = save(fig, out, formats)
    plt.close(fig)
    return paths
