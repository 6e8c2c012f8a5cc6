"""Regenerate the tutorial's figures from real runs: python docs/tutorial/make_figures.py

Writes img/fig1.png, img/fd_error.png, img/rmd_vs_T.png and img/attack_trace.png (small
PNGs). ``--out DIR`` writes elsewhere (the test does).
"""
import argparse
from pathlib import Path

import numpy as np

import hvpoison as hv
from hvpoison.data import load_task
from hvpoison.figures import fig1
from hvpoison.plots import pyplot

HERE = Path(__file__).resolve().parent


def fd_error(out, plt):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 8)), (rng.random(60) < 0.5).astype(float)
    obj = hv.Objective(hv.MLP((8, 6, 1), slope=0.2), "l2")
    w, v = rng.normal(size=obj.model.n_params), rng.normal(size=obj.model.n_params)
    Hv = obj.hvp(w, X, y, -1.0, v)
    hs = 10.0 ** -np.arange(1, 12.5, 0.5)
    err = [np.linalg.norm((obj.grad(w + h * v, X, y, -1.0) - obj.grad(w - h * v, X, y, -1.0))
                          / (2 * h) - Hv) / np.linalg.norm(Hv) for h in hs]
    fig, ax = plt.subplots(figsize=(5, 3.4), constrained_layout=True)
    ax.loglog(hs, err, "o-", ms=4)
    ax.loglog(hs, hs ** 2 * err[2] / hs[2] ** 2, "--", color="gray", label="∝ h² (truncation)")
    ax.loglog(hs, 1e-16 / hs * err[-1] / (1e-16 / hs[-1]), ":", color="gray",
              label="∝ 1/h (round-off)")
    ax.set_ylim(min(err) / 10, 10)
    ax.set_xlabel("step h")
    ax.set_ylabel("relative error of H v")
    ax.set_title("Central differences vs the R-operator")
    ax.legend()
    fig.savefig(out / "fd_error.png", dpi=90)


def rmd_vs_T(out, plt):
    rng = np.random.default_rng(0)
    n, d = 300, 20
    X, y = rng.normal(size=(n, d)), (rng.random(n) < 0.5).astype(float)
    X[:, 0] += 2 * y - 1
    Xv, yv = X[:60] + 0.1 * rng.normal(size=(60, d)), y[:60]
    obj, lam, rows = hv.Objective(hv.LR(d), "l2"), -2.0, np.arange(10)
    exact = hv.implicit_hypergrad(obj, X, y, rows, Xv, yv, lam)
    Ts = [3, 10, 30, 100, 300, 1000, 3000]
    ex, el = [], []
    for T in Ts:
        r = hv.rmd(obj, np.zeros(d + 1), X, y, rows, Xv, yv, lam, T, 0.5)
        ex.append(np.linalg.norm(r.dXp - exact.dXp) / np.linalg.norm(exact.dXp))
        el.append(abs(float(r.dlam) - float(exact.dlam)) / abs(float(exact.dlam)))
    fig, ax = plt.subplots(figsize=(5, 3.4), constrained_layout=True)
    ax.loglog(Ts, ex, "o-", label="∇X_p")
    ax.loglog(Ts, el, "s-", label="∇λ")
    ax.set_xlabel("inner steps T")
    ax.set_ylabel("relative distance to Eq. 4")
    ax.set_title("Alg. 1 converges to the implicit hypergradient")
    ax.legend()
    fig.savefig(out / "rmd_vs_T.png", dpi=90)


def attack_trace(out, plt):
    s = load_task("mnist-mini", n_tr=300, n_test=1000, seed=0)
    obj = hv.Objective(hv.LR(784), "l2")
    trace = []
    hv.attack(obj, s.Xtr, s.ytr, s.Xval, s.yval, n_poison=15, n_batches=2, iters=15, T=100,
              eta=0.1, alpha=1.0, alpha_lam=0.2, lam=-4.0, learn_lam=True, box=s.box, seed=0,
              callback=lambda b, k, value, lam: trace.append((b, k, value, float(lam))))
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    for b in (0, 1, 2):
        pts = [(k, v, lam) for bb, k, v, lam in trace if bb == b]
        k, v, lam = map(np.array, zip(*pts))
        ax[0].plot(k, v, "o-", ms=3, label=f"batch {b} ({b * 5} %)")
        ax[1].plot(k, lam, "o-", ms=3, label=f"batch {b}")
    ax[0].set_ylabel("validation loss (attacker ↑)")
    ax[1].set_ylabel("λ (defender ↓ the same loss)")
    for a in ax:
        a.set_xlabel("hyperiteration")
    ax[0].legend()
    fig.suptitle("Alg. 2 on the embedded MNIST subset")
    fig.savefig(out / "attack_trace.png", dpi=90)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE / "img"))
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    plt = pyplot()
    res = fig1.compute(quick=False)
    fig1.plot(res, str(out / "fig1"), formats=("png",))
    fd_error(out, plt)
    rmd_vs_T(out, plt)
    attack_trace(out, plt)
    plt.close("all")
    return sorted(p.name for p in out.glob("*.png"))


if __name__ == "__main__":
    print(main())
