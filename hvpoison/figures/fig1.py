"""Fig. 1: one optimised poisoning point against LR on two 2-D Gaussians.

Panels: (left) no regularisation, (centre) a fixed L2 ``lam``: the decision boundary on the
clean data (dashed) and with the optimised point (solid), over the map of the validation
error as a function of the point's location; (right) the map of the ``lam`` that minimises
the validation error for each location.

As in Appendix A the point is cloned from the validation set (class 0), its label flipped,
*appended* to the training set, and its features optimised with RMD (Alg. 1) by normalised
ascent (Alg. 2, one batch of one point). The maps train one LR per grid location; those
trainings are batched over the grid (:func:`train_grid`), and a test checks them against
:func:`hvpoison.train`.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .. import LR, Objective, rmd, train
from ..data import synthetic2d
from scipy.special import expit as sigmoid

FULL = {"grid": 61, "lam_grid": np.linspace(-6.0, 2.0, 17), "iters": 100, "T": 200,
        "eta": 0.5, "alpha": 0.2, "lam": -1.0, "n_tr": 32, "n_val": 32, "seed": 4,
        "mean": 1.5, "std": 0.8}
QUICK = {**FULL, "grid": 21, "lam_grid": np.linspace(-6.0, 2.0, 5), "iters": 20}


def train_grid(X, y, P, yp, lam, T, eta):
    """LR trained by full-batch gradient descent (Eq. 6, from zeros) on ``(X, y)`` plus one
    point ``P[g]`` labelled ``yp``, for every row ``g`` of ``P`` at once.

    ``X (n, d)``, ``P (G, d)``; ``lam`` None or a scalar (L2, weights only). Returns the
    weights ``(G, d)`` and biases ``(G,)``; row ``g`` equals ``hv.train`` on the ``n + 1``
    rows."""
    n1 = X.shape[0] + 1
    W, b = np.zeros((P.shape[0], X.shape[1])), np.zeros(P.shape[0])
    decay = 0.0 if lam is None else np.exp(lam)
    for _ in range(T):
        r = sigmoid(W @ X.T + b[:, None]) - y            # (G, n) residuals of the clean rows
        rp = sigmoid((W * P).sum(1) + b) - yp             # (G,) residual of the point
        gW = (r @ X + rp[:, None] * P) / n1 + decay * W
        gb = (r.sum(1) + rp) / n1
        W -= eta * gW
        b -= eta * gb
    return W, b


def val_error_map(s, xs, ys, yp, lam, T, eta):
    P = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
    W, b = train_grid(s.Xtr, s.ytr, P, yp, lam, T, eta)
    pred = (W @ s.Xval.T + b[:, None]) > 0
    return (pred != (s.yval > 0.5)).mean(1).reshape(len(ys), len(xs))


def best_lam_map(s, xs, ys, yp, lam_grid, T, eta):
    """For each location, the ``lam`` of ``lam_grid`` with the lowest validation error
    (ties: the lowest validation cross-entropy)."""
    P = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
    scores = []
    for lam in lam_grid:
        W, b = train_grid(s.Xtr, s.ytr, P, yp, lam, T, eta)
        z = W @ s.Xval.T + b[:, None]
        err = ((z > 0) != (s.yval > 0.5)).mean(1)
        ce = np.logaddexp(0, z).mean(1) - (z * s.yval).mean(1)
        scores.append(err + 1e-3 * ce / (1 + ce))          # error first, CE breaks ties
    return np.asarray(lam_grid)[np.argmin(scores, axis=0)].reshape(len(ys), len(xs))


def optimise_point(s, lam, cfg):
    """Alg. 2 with one appended point: returns its initial and optimised location."""
    obj = Objective(LR(2), None if lam is None else "l2")
    j = int(np.flatnonzero(s.yval == 0)[0])                 # clone a class-0 validation row
    X = np.vstack([s.Xtr, s.Xval[j]])
    y = np.append(s.ytr, 1.0)                                # ... with its label flipped
    idx, lo, hi = np.array([len(s.Xtr)]), s.box[0], s.box[1]
    x0 = X[-1].copy()
    for _ in range(cfg["iters"]):
        hg = rmd(obj, np.zeros(3), X, y, idx, s.Xval, s.yval, lam, cfg["T"], cfg["eta"])
        g = hg.dXp
        nrm = np.linalg.norm(g)
        if nrm > 0:
            X[-1] = np.clip(X[-1] + cfg["alpha"] * g[0] / nrm, lo, hi)
    return x0, X[-1].copy(), X, y, obj


def compute(quick=False) -> dict:
    cfg = QUICK if quick else FULL
    t0 = time.perf_counter()
    s = synthetic2d(cfg["n_tr"], cfg["n_val"], 1000, seed=cfg["seed"], mean=cfg["mean"],
                    std=cfg["std"])
    lo, hi = s.box
    xs = ys = np.linspace(lo, hi, cfg["grid"])
    out = {"config": settings(quick),
           "Xtr": s.Xtr, "ytr": s.ytr, "Xval": s.Xval, "yval": s.yval, "xs": xs, "ys": ys}
    for name, lam in (("none", None), ("l2", cfg["lam"])):
        x0, xp, X, y, obj = optimise_point(s, lam, cfg)
        w_clean = train(obj, s.Xtr, s.ytr, lam, T=cfg["T"], eta=cfg["eta"])
        w_pois = train(obj, X, y, lam, T=cfg["T"], eta=cfg["eta"])
        emap = val_error_map(s, xs, ys, 1.0, lam, cfg["T"], cfg["eta"])
        err = {k: float(((s.Xval @ w[:2] + w[2] > 0) != (s.yval > 0.5)).mean())
               for k, w in (("clean", w_clean), ("poisoned", w_pois))}
        out[name] = {"x0": x0, "xp": xp, "w_clean": w_clean, "w_poisoned": w_pois,
                     "error_map": emap, "val_error": err, "lam": lam}
    out["lam_map"] = best_lam_map(s, xs, ys, 1.0, cfg["lam_grid"], cfg["T"], cfg["eta"])
    out["seconds"] = time.perf_counter() - t0
    return out


def settings(quick=False) -> dict:
    """The settings of a mode as :func:`compute` records them (``config``, JSON types)."""
    cfg = QUICK if quick else FULL
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in cfg.items()}


ARRAYS = ("Xtr", "ytr", "Xval", "yval", "xs", "ys", "lam_map")
POINT_ARRAYS = ("x0", "xp", "w_clean", "w_poisoned", "error_map")       # per "none", "l2"


def load(path, quick=False) -> dict:
    """What :func:`compute` returned, read back from its JSON at ``path``, arrays restored;
    ``ValueError`` when the file is not that, or holds another mode's settings."""
    redo = "pass --recompute to compute it again (the file is overwritten)"
    try:
        res = json.loads(Path(path).read_text())
        got = res["config"]
        if not isinstance(got, dict):
            raise TypeError(f"config is {type(got).__name__}, not a table")
        for k in ARRAYS:
            res[k] = np.asarray(res[k], dtype=float)
        for name in ("none", "l2"):
            res[name].update({k: np.asarray(res[name][k], dtype=float) for k in POINT_ARRAYS})
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"--out: expected {path} to hold Fig. 1's numbers, got a file that "
                         f"does not ({type(exc).__name__}: {exc}); {redo}") from None
    want = settings(quick)
    if got != want:
        diffs = "; ".join(f"{k} = {got.get(k)!r} there, {want.get(k)!r} here"
                          for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k))
        raise ValueError(f"--out: expected {path} to hold Fig. 1 in "
                         f"{'quick' if quick else 'full'} mode, got other settings ({diffs}); "
                         f"{redo}")
    return res


def plot(res, path, formats=("png", "pdf")):
    from ..plots import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), constrained_layout=True)
    xs, ys = res["xs"], res["ys"]
    ext = (xs[0], xs[-1], ys[0], ys[-1])

    def boundary(ax, w, **kw):
        if abs(w[1]) > 1e-12:
            ax.plot(xs, -(w[0] * xs + w[2]) / w[1], **kw)

    for ax, name, title in ((axes[0], "none", "no regularisation"),
                            (axes[1], "l2", f"L2, λ = {res['l2']['lam']:g}")):
        r = res[name]
        im = ax.imshow(r["error_map"], origin="lower", extent=ext, cmap="viridis",
                       vmin=0, vmax=max(0.5, float(res["none"]["error_map"].max())),
                       aspect="auto")
        fig.colorbar(im, ax=ax, label="validation error")
        ax.set_title(f"{title}: val. error {r['val_error']['clean']:.2f} → "
                     f"{r['val_error']['poisoned']:.2f}")
        _points(ax, res)
        boundary(ax, r["w_clean"], color="white", ls="--", lw=2, label="clean boundary")
        boundary(ax, r["w_poisoned"], color="red", lw=2, label="poisoned boundary")
        ax.scatter(*r["xp"], s=160, c="red", marker="*", edgecolors="k", zorder=5,
                   label="poisoning point (label 1)")
        ax.annotate("", r["xp"], r["x0"], arrowprops={"arrowstyle": "->", "color": "red"})
        ax.set_xlim(ext[:2])
        ax.set_ylim(ext[2:])
        ax.legend(loc="lower right", fontsize=8)
    ax = axes[2]
    im = ax.imshow(res["lam_map"], origin="lower", extent=ext, cmap="magma", aspect="auto")
    fig.colorbar(im, ax=ax, label="λ minimising the validation error")
    _points(ax, res)
    ax.set_xlim(ext[:2])
    ax.set_ylim(ext[2:])
    ax.set_title("best λ vs the poisoning point's location")
    for a in axes:
        a.set_xlabel("x₁")
        a.set_ylabel("x₂")
    from ..plots import save

    paths = save(fig, path, formats, dpi=120)
    plt.close(fig)
    return paths


def _points(ax, res):
    for c, col in ((0, "#1f77b4"), (1, "#2ca02c")):
        m = res["ytr"] == c
        ax.scatter(*res["Xtr"][m].T, s=18, c=col, edgecolors="white", lw=0.5)
