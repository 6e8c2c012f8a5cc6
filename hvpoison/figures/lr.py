"""Drawing Figs. 2, 3, 5, 8, 10 (LR on MNIST, Fashion-MNIST and CIFAR-10) and Fig. 4/9 (the
size of the trusted validation set); their experiments are in
:mod:`hvpoison.experiments.protocol`.

* Fig. 2 (L2) / Fig. 8 (L1): test error vs poisoning fraction for lam none / large /
  lam_CV / learned, one panel per task.
* Fig. 3: the learned lam and ``||w||^2/P`` vs fraction (L2 and L1).
* Fig. 5 (L2) / Fig. 10 (L1): Kuncheva's index of the top-k features, three k per task.
* Fig. 4/9: test error with lam none and learned for several validation sizes, and the
  relative decrease ``(E_none - E_learned) / E_none``.
"""
from __future__ import annotations

import numpy as np

TITLES = {"mnist": "MNIST 0 vs 8", "fmnist": "Fashion-MNIST trouser vs pullover",
          "cifar10": "CIFAR-10 airplane vs frog"}


def task_title(s) -> str:
    """A panel's title: the task, and what made its numbers (model, penalty, the attack's
    method and victim, the victims tested: :func:`hvpoison.experiments.summary.describe_run`)."""
    from ..experiments.summary import describe_run

    return f"{TITLES.get(s['task'], s['task'])}\n{describe_run(s)}"


# -- plots ---------------------------------------------------------------------------------
def panel(ax, table, metric, comp=0, **kw):
    """One setting's ``metric`` (component ``comp``) vs fraction, mean ± std."""
    from ..plots import series

    series(ax, table, metric, comp, **kw)
    ax.set_xticks(table["fraction"])
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:.0%}")


def save_figure(fig, path, formats):
    from ..plots import save

    return save(fig, path, formats, dpi=120)


def plot_error(summaries, path, title, formats=("png", "pdf")):
    """Fig. 2 / Fig. 8: one panel per task, test error vs fraction for each setting."""
    from ..plots import pyplot, style

    plt = pyplot()
    fig, axes = plt.subplots(1, len(summaries), figsize=(5 * len(summaries), 4),
                             constrained_layout=True, squeeze=False)
    for ax, s in zip(axes[0], summaries):
        for setting, t in s["settings"].items():
            panel(ax, t, "test_error", **style(setting, s))
        ax.set_title(task_title(s), fontsize=8)
        ax.set_xlabel("fraction of poisoning points")
        ax.set_ylabel("test error")
    axes[0][0].legend()
    fig.suptitle(title)
    paths = save_figure(fig, path, formats)
    plt.close(fig)
    return paths


def plot_error_victims(rows, path, title, baseline=None, formats=("png", "pdf")):
    """Figs. 2 / 8 under the strong attack: one row of panels per victim (``rows``: ``{victim
    label: [summary per task]}``, each with the settings to draw), one column per task; the
    Alg. 2 run of the same task and setting (``baseline``: ``{task: summary}``), when given,
    thin and dotted in the same colour, so the extra damage reads off the gap."""
    from ..plots import pyplot, style

    plt = pyplot()
    tasks = list(dict.fromkeys(s["task"] for sums in rows.values() for s in sums))
    fig, axes = plt.subplots(len(rows), len(tasks), figsize=(5 * len(tasks), 4 * len(rows)),
                             constrained_layout=True, squeeze=False, sharex="col")
    for i, (label, sums) in enumerate(rows.items()):
        by_task = {s["task"]: s for s in sums}
        for j, task in enumerate(tasks):
            ax = axes[i][j]
            for setting, t in (by_task[task]["settings"] if task in by_task else {}).items():
                kw = style(setting, by_task[task])
                panel(ax, t, "test_error", **kw)
                base = (baseline or {}).get(task, {}).get("settings", {}).get(setting)
                if base is not None:
                    ax.plot(base["fraction"], [m[0] for m in base["test_error"]["mean"]],
                            color=kw["color"], ls=":", lw=1.2, alpha=0.8)
            ax.set_title(f"{task_title(by_task[task]) if task in by_task else task}\n{label}",
                         fontsize=8)
            ax.set_ylabel("test error")
            if i == len(rows) - 1:
                ax.set_xlabel("fraction of poisoning points")
    axes[0][0].legend(title="solid: strong; dotted: Alg. 2" if baseline else None)
    fig.suptitle(title)
    paths = save_figure(fig, path, formats)
    plt.close(fig)
    return paths


def plot_lam_norm(summaries, path, title, formats=("png", "pdf")):
    """Fig. 3: learned lam (top) and ``||w||^2/P`` (bottom, log scale) per task."""
    from ..plots import pyplot, style

    plt = pyplot()
    fig, axes = plt.subplots(2, len(summaries), figsize=(5 * len(summaries), 7),
                             constrained_layout=True, squeeze=False)
    for j, s in enumerate(summaries):
        for setting, t in s["settings"].items():
            if setting == "learned":
                panel(axes[0][j], t, "lam", **style(setting, s))
            panel(axes[1][j], t, "w_norm2", **style(setting, s))
        axes[0][j].set_title(task_title(s), fontsize=8)
        axes[0][j].set_ylabel("learned λ")
        axes[1][j].set_ylabel("||w||² / P")
        axes[1][j].set_yscale("log")
        axes[1][j].set_xlabel("fraction of poisoning points")
    axes[1][0].legend()
    fig.suptitle(title)
    paths = save_figure(fig, path, formats)
    plt.close(fig)
    return paths


def plot_kuncheva(summaries, path, title, formats=("png", "pdf")):
    """Fig. 5 / Fig. 10: Kuncheva's index vs fraction; rows = k, columns = tasks."""
    from ..plots import pyplot, style

    plt = pyplot()
    fig, axes = plt.subplots(3, len(summaries), figsize=(5 * len(summaries), 9.5),
                             constrained_layout=True, squeeze=False)
    for j, s in enumerate(summaries):
        ks = sorted({m.split("@")[1] for t in s["settings"].values() for m in t
                     if m.startswith("kuncheva@")}, key=int)
        for i, k in enumerate(ks[:3]):
            ax = axes[i][j]
            for setting, t in s["settings"].items():
                panel(ax, t, f"kuncheva@{k}", **style(setting, s))
            ax.set_title(f"{task_title(s)}, top {k}", fontsize=8)
            ax.set_ylabel("Kuncheva's index")
        axes[-1][j].set_xlabel("fraction of poisoning points")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    paths = save_figure(fig, path, formats)
    plt.close(fig)
    return paths


def relative_decrease(summary) -> list:
    """``(E_none - E_learned) / E_none`` per fraction (the paper's Fig. 4/9 measure)."""
    e0 = np.array([m[0] for m in summary["settings"]["none"]["test_error"]["mean"]])
    e1 = np.array([m[0] for m in summary["settings"]["learned"]["test_error"]["mean"]])
    return ((e0 - e1) / np.maximum(e0, 1e-12)).tolist()


def plot_valsize(summaries, path, title, formats=("png", "pdf")):
    """Fig. 4/9: test error (none: dashed, learned: solid) per validation size, and the
    relative decrease of the test error."""
    from ..plots import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    cmap = plt.get_cmap("viridis")
    for i, s in enumerate(summaries):
        c = cmap(i / max(1, len(summaries) - 1))
        n_val = s["n_val"]
        panel(axes[0], s["settings"]["none"], "test_error", color=c, ls="--")
        panel(axes[0], s["settings"]["learned"], "test_error", color=c,
               label=f"n_val = {n_val}")
        x = s["settings"]["none"]["fraction"]
        axes[1].plot(x, relative_decrease(s), marker="o", color=c, label=f"n_val = {n_val}")
    axes[0].set_ylabel("test error (dashed: λ = −∞, solid: learned λ)")
    axes[1].set_ylabel("(E_none − E_learned) / E_none")
    for a in axes:
        a.set_xlabel("fraction of poisoning points")
        a.set_xticks(summaries[0]["settings"]["none"]["fraction"])
        a.xaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    paths = save_figure(fig, path, formats)
    plt.close(fig)
    return paths
