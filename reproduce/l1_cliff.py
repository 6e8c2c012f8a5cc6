"""Clean test error of the fig. 11 MLP trained with a constant L1 lam, for a range of lam:
where the plain (sub)gradient descent of Eq. 6 stops training the net.

Usage: python reproduce/l1_cliff.py [--task mnist] [--lams -5 -4 -3.6 -3.2 -3 -2.8 -2.4]
           [--seeds 5] [--data-dir DIR]

Each L1 step moves every first-layer weight by ``eta exp(lam)`` towards zero; once that
outweighs the data's pull, the weights chatter around zero, the hidden units die and the
net predicts one class (error 0.5). The learned lam of Alg. 2 is blind to this cliff until
it steps over it (reproduce/README.md, "MLP with L1").
"""
import argparse

import numpy as np

import hvpoison as hv
from hvpoison.data import load_task
from hvpoison.experiments import protocol

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="mnist", choices=protocol.TASKS)
    ap.add_argument("--lams", type=float, nargs="+",
                    default=[-5, -4, -3.6, -3.2, -3.0, -2.8, -2.4])
    ap.add_argument("--seeds", type=int, default=5, help="Xavier draws per lam")
    ap.add_argument("--data-dir")
    a = ap.parse_args()
    s = load_task(a.task, n_tr=1000, n_test=2000, seed=0, data_dir=a.data_dir)
    model = hv.MLP((s.Xtr.shape[1], *protocol.HIDDEN, 1), slope=0.01)
    obj = hv.Objective(model, "l1")
    eta = protocol.ETA[a.task]
    print(f"{a.task}, MLP {model.sizes}, L1, T = 200, eta = {eta}, clean test error per "
          f"Xavier draw (seeds 0..{a.seeds - 1})\n")
    print("| lam | eta exp(lam) | test error per seed | collapsed (0.5) |\n|---|---|---|---|")
    for lam in a.lams:
        errs = [hv.error(model, hv.train(obj, s.Xtr, s.ytr, lam, T=200, eta=eta, seed=k),
                         s.Xte, s.yte) for k in range(a.seeds)]
        dead = sum(e >= 0.45 for e in errs)
        print(f"| {lam:+.1f} | {eta * np.exp(lam):.4f} | "
              + " ".join(f"{e:.3f}" for e in errs) + f" | {dead}/{a.seeds} |", flush=True)
