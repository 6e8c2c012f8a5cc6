"""Drawing Figs. 6, 7, 11-14: the MLP (two Leaky-ReLU hidden layers) under the optimal
attack; the experiments are in :mod:`hvpoison.experiments.protocol`.

* Fig. 6 (L2) / Fig. 11 (L1): test error vs fraction for lam none / large / learned (one
  lam) / learned per layer.
* Fig. 7 (L2) / Fig. 12 (L1): the learned lam per layer (and the single learned lam).
* Fig. 13 (L2) / Fig. 14 (L1): ``||W_k||^2/P_k`` per layer.

The paper omits lam_CV for the MLP (too expensive), and so do we. For the MLP attack
``w_0`` is drawn afresh at every hyperiteration (Alg. 2 line 5).
"""
from __future__ import annotations

from .lr import panel, save_figure, task_title


def plot_lam_layers(summaries, path, title, formats=("png", "pdf")):
    """Fig. 7 / 12: learned lam per layer (solid, one colour per layer) and the single
    learned lam (dashed black), per task."""
    from ..plots import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, len(summaries), figsize=(5 * len(summaries), 4),
                             constrained_layout=True, squeeze=False)
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"]
    for ax, s in zip(axes[0], summaries):
        st = s["settings"]
        if "learned_per_layer" in st:
            t = st["learned_per_layer"]
            for k in range(len(t["lam"]["mean"][0])):
                panel(ax, t, "lam", k, color=colours[k % 4],
                       label="output layer" if k == len(t["lam"]["mean"][0]) - 1
                       else f"hidden layer {k + 1}")
        if "learned" in st:
            panel(ax, st["learned"], "lam", color="k", ls="--", label="single learned λ")
        ax.set_title(task_title(s), fontsize=8)
        ax.set_xlabel("fraction of poisoning points")
        ax.set_ylabel("learned λ")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    paths = save_figure(fig, path, formats)
    plt.close(fig)
    return paths


def plot_norm_layers(summaries, path, title, formats=("png", "pdf")):
    """Fig. 13 / 14: ``||W_k||^2/P_k`` per layer (columns) for each setting; rows = tasks."""
    from ..plots import pyplot, style

    plt = pyplot()
    n_layers = len(next(iter(summaries[0]["settings"].values()))["w_norm2"]["mean"][0])
    fig, axes = plt.subplots(len(summaries), n_layers, figsize=(4.5 * n_layers,
                                                                3.6 * len(summaries)),
                             constrained_layout=True, squeeze=False)
    for i, s in enumerate(summaries):
        for k in range(n_layers):
            ax = axes[i][k]
            for setting, t in s["settings"].items():
                panel(ax, t, "w_norm2", k, **style(setting, s))
            ax.set_yscale("log")
            ax.set_title(f"{task_title(s)}: "
                         + ("output layer" if k == n_layers - 1 else f"hidden layer {k + 1}"),
                         fontsize=10)
            ax.set_ylabel("||W_k||² / P_k")
        axes[i][0].legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("fraction of poisoning points")
    fig.suptitle(title)
    paths = save_figure(fig, path, formats)
    plt.close(fig)
    return paths
