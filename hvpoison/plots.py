"""Plots of an experiment's ``summary.json`` (matplotlib, headless). Reads results, never
recomputes them.

:func:`plot_summary` draws, against the poisoning fraction: the test error per lam setting
with error bars (± std over repetitions); the learned lam (one line per layer for
``learned_per_layer``); ``||W_k||^2/P_k``; and Kuncheva's index for each ``k``. With
several test victims, each victim's test error (the first solid, the others dashed).

:func:`plot_poison` shows the poisoning points beside the validation rows they were cloned
from (images for image tasks, a scatter for 2-D ones).
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


def style(setting, summary=None) -> dict:
    """Matplotlib keywords (colour, label, line style) that draw ``setting`` the same way in
    every figure; with ``summary``, the label names the setting by value (``λ = -6.9``:
    :func:`hvpoison.experiments.summary.setting_label`)."""
    return {"color": COLORS.get(setting), "label": _label(setting, summary),
            **STYLES.get(setting, {})}


def _label(setting, summary=None):
    if summary is None:
        return LABELS.get(setting, setting)
    from .experiments.summary import setting_label

    return setting_label(setting, summary)


def pyplot():
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


def series(ax, t, metric, comp, **kw):
    import numpy as np

    x = np.array(t["fraction"])
    mu = np.array([m[comp] for m in t[metric]["mean"]])
    sd = np.array([s[comp] for s in t[metric]["std"]])
    ax.errorbar(x, mu, yerr=sd, capsize=3, **{"marker": "o", "ms": 4, "lw": 1.6, **kw})


def plot_summary(summary, out, formats=("png", "pdf"), floor=None) -> list:
    """Write the four-panel figure of ``summary`` (a dict or a path) to ``out`` + each
    format; returns the written paths. ``floor``: the summary of the attack's floor
    (:meth:`hvpoison.experiments.Experiment.floor`), drawn dotted in the test-error panel."""
    if not isinstance(summary, dict):
        summary = load_summary(summary)
    plt = pyplot()
    settings = summary["settings"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)
    _panel_test_error(axes[0, 0], summary, floor)
    _panel_lam(axes[0, 1], summary)
    _panel_weights(axes[1, 0], summary)
    _panel_kuncheva(axes[1, 1], settings)
    fracs = max((t["fraction"] for t in settings.values()), key=len)
    for a in axes.flat:
        _pct(a)
        a.set_xticks(fracs)
    from .experiments.summary import describe_run

    fig.suptitle(f"{summary.get('name', '')}: {describe_run(summary)}", fontsize=12)
    paths = save(fig, out, formats)
    plt.close(fig)
    return paths


#: the line styles of the layers (and of Kuncheva's k), in turn
_LINES = ["-", "--", ":", "-."]


def _panel_test_error(ax, summary, floor=None):
    """The test error per setting; with several victims, each (the first solid); the
    ``floor``'s settings (label flipping alone, the first victim) dotted, in their colours."""
    victims = summary.get("victims", ["gd"])
    for j, v in enumerate(victims):          # the first victim solid, others dashed
        metric = "test_error" if victims == ["gd"] else f"test_error@{v}"
        for s, t in summary["settings"].items():
            if metric in t:
                kw = style(s, summary)
                if len(victims) > 1:
                    kw = {**kw, "label": f"{kw['label']}, {v} victim",
                          "ls": "-" if j == 0 else "--", "mfc": None if j == 0 else "none"}
                series(ax, t, metric, 0, **kw)
    metric = "test_error" if victims == ["gd"] else f"test_error@{victims[0]}"
    for s, t in (floor or {}).get("settings", {}).items():
        if metric in t:
            kw = style(s, floor)
            series(ax, t, metric, 0, **{**kw, "ls": ":", "marker": "x", "alpha": 0.8,
                                        "label": f"{kw['label']}: label flipping alone "
                                                 "(floor)"})
    ax.set_ylabel("test error")
    ax.set_title("Test error under attack")
    ax.legend()


def _panel_lam(ax, summary):
    """The learned lam per learned setting, one line per layer (or a note: none)."""
    for s, t in summary["settings"].items():
        if "lam" in t and s.startswith("learned"):
            for c in range(len(t["lam"]["mean"][0])):
                lab = _label(s, summary) + (f", layer {c + 1}" if len(t["lam"]["mean"][0]) > 1
                                          else "")
                series(ax, t, "lam", c, color=COLORS.get(s), ls=_LINES[c % 4], label=lab)
    ax.set_ylabel("learned λ (log scale)")
    ax.set_title("Learned regularisation")
    if ax.lines:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no learned λ in this experiment", ha="center", va="center",
                transform=ax.transAxes, color="0.4")


def _panel_weights(ax, summary):
    """``||W_k||^2/P_k`` per setting, one line per layer, on a log scale."""
    for s, t in summary["settings"].items():
        n_layers = len(t["w_norm2"]["mean"][0])
        for c in range(n_layers):
            lab = _label(s, summary) + (f", layer {c + 1}" if n_layers > 1 else "")
            series(ax, t, "w_norm2", c, color=COLORS.get(s), ls=_LINES[c % 4], label=lab)
    ax.set_yscale("log")
    ax.set_ylabel("||w||² / P")
    ax.set_title("Weight norm")
    ax.legend()


def _panel_kuncheva(ax, settings):
    """Kuncheva's index per setting (colour) and ``k`` (line style)."""
    ks = sorted({m.split("@")[1] for t in settings.values() for m in t if m.startswith("kuncheva@")},
                key=int)
    for s, t in settings.items():
        for i, k in enumerate(ks):
            if f"kuncheva@{k}" in t:
                series(ax, t, f"kuncheva@{k}", 0, color=COLORS.get(s), ls=_LINES[i % 4])
    ax.set_ylabel("Kuncheva's consistency index")
    ax.set_title("Stability of the selected features")
    if ks:      # colours are the settings (as in the other panels); line styles the k
        from matplotlib.lines import Line2D

        ax.legend([Line2D([], [], color="k", ls=_LINES[i % 4]) for i in range(len(ks))],
                  [f"top {k} features" for k in ks], loc="lower left")


def _image(x):
    """A feature vector as an image: 28 x 28 grey (MNIST, Fashion-MNIST), 32 x 32 RGB
    (CIFAR-10, plane order, scaled from [-1, 1]), else None."""
    import numpy as np

    x = np.asarray(x, dtype=float)
    if x.size == 784:
        return x.reshape(28, 28), "gray_r"
    if x.size == 3072:
        img = x.reshape(3, 32, 32).transpose(1, 2, 0)
        lo, hi = img.min(), img.max()
        return (img + 1) / 2 if lo >= -1 and hi <= 1 and lo < 0 else img, None
    return None, None


def _run_of(folder, setting) -> str:
    """What made a folder's points: the setting by value, model, task, penalty, method and
    victim (from its ``summary.json``, else its ``experiment.json``)."""
    from .experiments.summary import describe_run, setting_label

    try:
        summary = load_summary(folder)
    except ValueError:
        summary = None
    if summary is None or "settings" not in summary:
        try:
            cfg = json.loads((Path(folder) / "experiment.json").read_text())["config"]
            summary = {"model": cfg["model"]["kind"], "task": cfg["data"]["task"],
                       "penalty": cfg["defense"]["penalty"], "method": cfg["attack"]["method"],
                       "attack_victim": cfg["attack"]["victim"],
                       "victims": cfg["test"]["victims"], "settings": {},
                       "lam_large": cfg["defense"]["lam_large"]}
        except (OSError, ValueError, KeyError, TypeError):
            return setting
    return f"{setting_label(setting, summary)}, {describe_run(summary)}"


def plot_poison(folder, out, *, setting=None, rep=0, n=8, formats=("png", "pdf")) -> list:
    """Picture what the attack did: ``n`` poisoning points of the last recorded batch of
    ``setting`` (default: the first attacked one) beside the validation rows initDp cloned
    them from, with their (flipped) labels; image tasks show the images, 2-D tasks a
    scatter with an arrow from each clone to its poisoning point. Returns the paths, or
    ``[]`` when the records hold no starting points (results of hvpoison < 0.2)."""
    from .experiments.store import Store

    store = Store(folder)
    rec = _last_batch(store, rep, setting)
    if rec is None:
        return []
    z = store.load_arrays(store.key(rep, rec["setting"], rec["b"]))
    if "X0" not in z:
        return []
    X0, Xp, yp = z["X0"], z["Xp"], z["yp"]
    plt = pyplot()
    title = (f"{_run_of(folder, rec['setting'])}: {len(Xp)} poisoning points of batch "
             f"{rec['b']} ({rec['fraction']:.0%} poisoned), repetition {rep}")
    if X0.shape[1] == 2:
        fig = _poison_scatter(plt, X0, Xp, yp, title)
    else:
        fig = _poison_images(plt, X0, Xp, yp, n, title)
    paths = save(fig, out, formats)
    plt.close(fig)
    return paths


def _last_batch(store, rep, setting):
    """The record of the last batch of ``setting`` (default: the first attacked one) in
    repetition ``rep``; None if there is none."""
    records = [r for r in store.all_records() if r.get("b") and r["rep"] == rep]
    if setting is not None:
        records = [r for r in records if r["setting"] == setting]
    if not records:
        return None
    order = {s: i for i, s in enumerate(dict.fromkeys(r["setting"] for r in records))}
    return max(records, key=lambda r: (-order[r["setting"]], r["b"]))


def _poison_scatter(plt, X0, Xp, yp, title):
    """2-D points: each clone (hollow) with an arrow to its poisoning point (a cross)."""
    fig, ax = plt.subplots(figsize=(6, 5), constrained_layout=True)
    for lab, c in ((0, "#1f77b4"), (1, "#d62728")):
        m = yp == lab
        ax.scatter(*X0[m].T, s=25, facecolors="none", edgecolors=c,
                   label=f"validation clone (label {1 - lab})")
        ax.scatter(*Xp[m].T, s=30, color=c, marker="x", label=f"poison, label {lab}")
        for a, b in zip(X0[m], Xp[m]):
            ax.annotate("", b, a, arrowprops={"arrowstyle": "->", "color": c,
                                              "alpha": 0.5})
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig


def _poison_images(plt, X0, Xp, yp, n, title):
    """``n`` points, evenly picked: the validation rows on top, the poison below."""
    import numpy as np

    k = min(n, len(Xp))
    pick = np.linspace(0, len(Xp) - 1, k).round().astype(int)
    fig, axes = plt.subplots(2, k, figsize=(1.6 * k, 3.8), constrained_layout=True,
                             squeeze=False)
    for j, i in enumerate(pick):
        for row, (x, lab, name) in enumerate(((X0[i], 1 - yp[i], "validation row"),
                                              (Xp[i], yp[i], "poison"))):
            ax = axes[row, j]
            img, cmap = _image(x)
            if img is None:
                ax.imshow(np.asarray(x)[None, :], aspect="auto", cmap="coolwarm")
            else:
                ax.imshow(img, cmap=cmap, vmin=None if cmap is None else 0,
                          vmax=None if cmap is None else 1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            ax.set_title(f"{name}\nlabel {int(lab)}", fontsize=8)
    move = np.abs(Xp - X0).sum(axis=1).mean()
    fig.suptitle(f"{title}\ntop: the validation rows they were cloned from; bottom: "
                 f"the optimised points (mean L1 move {move:.1f})", fontsize=9)
    return fig
