"""Cross-evaluation: each setting's poisoned training sets, trained with every victim's lam.

Usage: python reproduce/cross_eval.py RESULTS [RESULTS ...] [--data-dir DIR]
           [--grid -10 -9.5 ... 2]

Writes ``RESULTS/cross_eval.json``, which ``reproduce/results.py`` copies to ``runs/`` and
prints beside the experiment's claims.

An experiment's table pairs each defence with *its own* attack: the "large" column is the
error of points optimised against the large constant lam, the "learned" column that of
points optimised while lam was learned. When two columns differ, either the defence or the
attack differs. This script separates them: it rebuilds the poisoned training set that the
attack against setting A left at the largest fraction (the records' ``.npz`` blocks), trains
the victim of setting B on it (``lam_large`` for "large", no penalty for "none", the ``lam``
that A's attack learned for "A's learned lam", and for "lam tuned on val" the single lam of
``--grid`` with the lowest validation loss of Eq. 3 on these very points: what a defender
who learns lam would pick against them) with the test protocol's ``T``, ``eta`` and
initialisation seed, and prints the test error, mean ± std over repetitions. The diagonal
(the A's-learned-lam entry of a learned row, the "large" entry of the large row, the "none"
entry of the none row) reproduces the experiment's own numbers; a column's maximum is the
worst case over the attacks found for that victim.
"""
import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

import hvpoison as hv
from hvpoison.experiments import Experiment, Store
from hvpoison.experiments.store import write_json
from hvpoison.experiments.runner import load_split, poison_blocks, seeds, victim


def poisoned(store, rep, setting, n_batches, split):
    """The training set the attack against ``setting`` left after ``n_batches`` batches."""
    X, y = split.Xtr.copy(), split.ytr.copy()
    for rows, Xp, yp in poison_blocks(store, rep, setting, n_batches):
        X[rows], y[rows] = Xp, yp
    return X, y


VICTIMS = ["none", "large", "A's learned lam", "lam tuned on val"]
GRID = np.arange(-10.0, 2.01, 0.5)


def tuned(obj, X, y, split, grid, T, eta, seed):
    """The weights for the lam of ``grid`` with the lowest validation loss (Eq. 3); a lam
    whose training diverges (a large L1 step on the MLP can) is not a candidate."""
    def fit(lam):
        try:
            w = hv.train(obj, X, y, lam, T=T, eta=eta, seed=seed)
        except hv.DivergenceError:
            return None, np.inf
        return w, float(obj.val_loss(w, split.Xval, split.yval))

    return min((fit(lam) for lam in grid), key=lambda wl: wl[1])[0]


def cross_eval(folder, data_dir=None, grid=GRID):
    """``(experiment, {(attacked setting, victim): [test error per repetition]})`` at the
    largest fraction."""
    folder = Path(folder)
    exp = Experiment.from_dict(json.loads((folder / "experiment.json").read_text())["config"])
    store, nb, t = Store(folder), exp.attack.n_batches, exp.test
    settings = exp.defense.settings          # "cv": the attack against lam_CV
    out = {}
    for rep in range(exp.repetitions):
        split = load_split(exp, rep, data_dir)
        d = split.Xtr.shape[1]
        for a in settings:
            if not store.has(store.key(rep, a, nb)):
                continue
            X, y = poisoned(store, rep, a, nb, split)
            victims = {"none": victim(exp, "none", d)[:2], "large": victim(exp, "large", d)[:2]}
            if a.startswith("learned"):
                obj, _, _ = victim(exp, a, d)
                lam = store.load(store.key(rep, a, nb))["lam"]
                victims["A's learned lam"] = (obj, np.array(lam) if isinstance(lam, list)
                                              else lam)
            seed = seeds(exp, rep)["init"]
            for v, (obj, lam) in victims.items():
                w = hv.train(obj, X, y, lam, T=t.T, eta=t.eta, seed=seed)
                out.setdefault((a, v), []).append(hv.error(obj.model, w, split.Xte, split.yte))
            obj = victims["large"][0]
            w = tuned(obj, X, y, split, grid, t.T, t.eta, seed)
            out.setdefault((a, VICTIMS[3]), []).append(hv.error(obj.model, w, split.Xte,
                                                                split.yte))
    return exp, out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", metavar="RESULTS", help="an experiment's folder")
    ap.add_argument("--data-dir")
    ap.add_argument("--grid", type=float, nargs="+", default=list(GRID),
                    help="the lam values a validation-tuning defender tries")
    args = ap.parse_args()
    for folder in args.results:
        if not (Path(folder) / "experiment.json").is_file():
            ap.error(f"RESULTS: expected a results folder (with experiment.json), got {folder!r}")
        t0 = time.perf_counter()
        exp, out = cross_eval(folder, args.data_dir, args.grid)
        errors = {}
        for (a, v), e in out.items():
            errors.setdefault(a, {})[v] = e
        write_json(Path(folder) / "cross_eval.json", {
            "name": exp.name, "fingerprint": exp.fingerprint(), "victims": VICTIMS,
            "errors": errors, "grid": list(args.grid),
            "seconds": time.perf_counter() - t0, "machine": platform.platform(),
            "date": time.strftime("%Y-%m-%d")})
        frac = exp.attack.n_poison * exp.attack.n_batches / exp.data.n_tr
        print(f"\n{exp.name}: test error at {frac:.0%} poisoned, points of the attack against "
              f"A (rows), trained by victim B (columns; large = {exp.defense.lam_large:+.1f})\n")
        print("| A \\ B | " + " | ".join(VICTIMS) + " |\n" + "|---" * (len(VICTIMS) + 1) + "|")
        rows = list(dict.fromkeys(k[0] for k in out))
        for a in rows:
            cells = [f"{np.mean(out[a, v]):.3f} ± {np.std(out[a, v]):.3f}"
                     if (a, v) in out else "" for v in VICTIMS]
            print(f"| {a} | " + " | ".join(cells) + " |")
        worst = [max((np.mean(out[a, v]) for a in rows if (a, v) in out), default=np.nan)
                 for v in VICTIMS]
        print("| worst case | " + " | ".join(f"**{e:.3f}**" for e in worst) + " |", flush=True)
