"""Writes tests/data/alg2_golden.npz: Alg. 2's outputs on small seeded problems, made with
the code of commit 700f237 (before Alg. 2 was split into methods). test_methods.py checks that
``method="alg2"`` still gives exactly these numbers. Run only to record a deliberate change."""
import os

import numpy as np

import hvpoison as hv
from helpers import blobs


CASES = {
    "lr_fixed": dict(obj=("lr", "l2", False), lam=-1.0),
    "lr_learned": dict(obj=("lr", "l2", False), lam=-2.0, learn_lam=True, lam_bounds=(-3.0, 0.5)),
    "lr_l1_restarts": dict(obj=("lr", "l1", False), lam=-2.0, restarts=2),
    "lr_none_targeted": dict(obj=("lr", None, False), lam=None, targeted=True, target="t"),
    "mlp_per_layer": dict(obj=("mlp", "l2", True), lam=np.array([-2.0, -2.0]), learn_lam=True,
                          n_batches=1, iters=5),
}


def make(name):
    kw = dict(CASES[name])
    kind, pen, per = kw.pop("obj")
    d = 2
    model = hv.LR(d) if kind == "lr" else hv.MLP((d, 4, 1), 0.1)
    obj = hv.Objective(model, pen, per_layer=per)
    X, y = blobs(60, seed=0)
    Xv, yv = blobs(20, seed=1)
    if kw.get("target") == "t":
        Xt, yt = blobs(6, seed=9)
        kw["target"] = (Xt, 1 - yt)
    args = dict(n_poison=4, n_batches=2, iters=15, T=60, eta=0.5, alpha=0.3, seed=3)
    args.update(kw)
    return hv.attack(obj, X, y, Xv, yv, **args)


def arrays(batches):
    out = {}
    for i, b in enumerate(batches):
        out[f"{i}_X"] = np.asarray(b.X)
        out[f"{i}_outer"] = np.asarray(b.trace["outer"], float)
        out[f"{i}_final"] = np.asarray(b.trace["final"], float)
        out[f"{i}_lam"] = np.asarray(np.nan if b.lam is None else b.lam, float)
    return out


if __name__ == "__main__":
    out = {}
    for name in CASES:
        out.update({f"{name}/{k}": v for k, v in arrays(make(name)).items()})
    np.savez(os.path.join(os.path.dirname(__file__), "data", "alg2_golden.npz"), **out)
    print(len(out), "arrays")
