"""LR's ``strong`` against the GD victim with a learned ``lam``: which ``lam`` comes back with
the points it keeps (found 2026-12-07).

Run:  OPENBLAS_NUM_THREADS=1 python bench/bench_lr_learned_lam.py --task mnist --penalty l2 \\
          [--reps 0] [--methods strong last alg2] [--quick] [--data-dir ../shared/datasets]
      python bench/bench_lr_learned_lam.py --report [JSON ...]

Why: LR's ``strong`` (:func:`hvpoison.methods.strong`: RMD + Adam for 100 hyperiterations,
keeping the iterate with the highest attacker objective) measures each iterate's objective
at the ``lam`` of its own hyperiteration. With a learned ``lam`` Alg. 2 restarts the
defender's ``lam`` at initL (-4) every batch and raises it along the batch, so an early
iterate, scored against a barely regularised defender, can win for that reason alone; the
batch then comes back with that iterate's points *and its ``lam``*: a defender that took 2-4
of its 100 steps. The MLP's ``strong`` had the same flaw (``check_lam="own"``; fixed by
``"final"`` and :func:`hvpoison.attack.relearn_lam`), LR's never went through that path.

Protocol: the experiment ``protocol.lr_config(task, penalty)`` (the paper's LR, ``T = 200``,
the task's ``eta``, ``alpha_lam = 0.2``, 5 cumulative batches of 40 points), the learned
setting, repetition ``r``'s split and attack seed as the runner draws them. Attackers:
``strong`` (as shipped), ``last`` (the same recipe returning its last iterate, as Alg. 2
does: ``Method(RMD(), Adam(0.02), 100, keep_best=False)``; its ``lam`` is the one the
defender learned along the batch) and ``alg2``. Each poisoned set is trained by the GD
victim (zeros start: deterministic) with the ``lam`` the attack returned and scored on the
test set.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

for _k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_k, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from common import header, results_or_report, save_results  # noqa: E402

import hvpoison as hv  # noqa: E402
from hvpoison.experiments import Experiment, protocol  # noqa: E402
from hvpoison.experiments.runner import load_split, seeds, victim  # noqa: E402
from hvpoison.methods import RMD, Adam, Method  # noqa: E402
from hvpoison.victims import as_victim  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
METHODS = {"strong": lambda k: "strong",
           "last": lambda k: Method(RMD("store"), Adam(0.02), 100 if k is None else k,
                                    keep_best=False, name="strong"),
           "alg2": lambda k: "alg2"}


def run_one(exp, rep, name, data_dir=None, quick=False):
    """One attacker on repetition ``rep`` of the learned setting: per fraction the test
    error, the returned ``lam``, the iterate kept, seconds. Each method takes its own
    ``iters`` (``quick``: the protocol's small one)."""
    split, sd, a = load_split(exp, rep, data_dir), seeds(exp, rep), exp.attack
    obj, lam, learn = victim(exp, "learned", split.Xtr.shape[1])
    iters, method = a.iters if quick else None, METHODS[name](a.iters if quick else None)
    t0 = time.perf_counter()
    batches = hv.attack(obj, split.Xtr, split.ytr, split.Xval, split.yval,
                        n_poison=a.n_poison, n_batches=a.n_batches, T=a.T, eta=a.eta,
                        alpha=a.alpha if name == "alg2" else None,
                        alpha_lam=a.alpha_lam, lam=lam, learn_lam=learn,
                        lam_bounds=tuple(a.lam_bounds), box=split.box, seed=sd["attack"],
                        method=method, iters=None if isinstance(method, Method) else iters)
    secs = time.perf_counter() - t0
    gd, rows = as_victim("gd", exp.test.T, exp.test.eta), []
    for b in batches:
        w = gd.fit(obj, b.X, b.y, b.lam, seed=sd["init"])
        lams = np.asarray(b.trace.get("lam") or [np.nan], float).ravel()
        rows.append({"fraction": b.fraction,
                     "test_error": hv.error(obj.model, w, split.Xte, split.yte),
                     "lam": float(np.ravel(b.lam)[0]), "lam_end_of_batch": float(lams[-1]),
                     "best": b.trace.get("best")})
    return {"rows": rows, "seconds": secs}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="mnist", choices=["mnist", "fmnist", "cifar10"])
    ap.add_argument("--penalty", default="l2", choices=["l2", "l1"])
    ap.add_argument("--reps", type=int, nargs="+", default=[0])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--quick", action="store_true", help="the protocol's quick mode (tests)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--json", default=os.path.join(HERE, "out", "lr_learned_lam.json"))
    ap.add_argument("--report", nargs="*", metavar="JSON",
                    help="only print the table of these result files (default: --json)")
    args = ap.parse_args(argv)
    results = results_or_report(args, report)
    if results is None:
        return
    exp = Experiment.from_dict(protocol.lr_config(args.task, args.penalty, args.quick))
    for rep in args.reps:
        for name in args.methods:
            key = f"{args.task}{'-quick' if args.quick else ''}/{args.penalty}/r{rep}/{name}"
            if key in results:
                continue
            results[key] = run_one(exp, rep, name, args.data_dir, args.quick)
            errs = " ".join(f"{r['test_error']:.3f}" for r in results[key]["rows"])
            print(f"# {key}: {errs}  ({results[key]['seconds']:.0f} s)", file=sys.stderr,
                  flush=True)
            save_results(args.json, results)
    print(report(results))


def report(results):
    """Markdown: per run and attacker the test error per fraction, the ``lam`` returned and
    the one the defender had reached at the batch's end, and the iterate kept per batch."""
    lines = [header(), "", "| run | attacker | test error at 0 / 4 / 8 / 12 / 16 / 20 % | "
             "sum 4–20 % | lam returned, 4 … 20 % | the defender's lam at the batch's end "
             "| iterate kept per batch | attack time (s) |", "|---|---|---|---|---|---|---|---|"]
    for key in sorted(results):
        run, name = key.rsplit("/", 1)
        rows = results[key]["rows"]
        errs = [r["test_error"] for r in rows]
        kept = " ".join("last" if r["best"] is None else str(r["best"]) for r in rows[1:])
        lam = " ".join(f"{r['lam']:.1f}" for r in rows[1:])
        end = " ".join(f"{r['lam_end_of_batch']:.1f}" for r in rows[1:])
        lines.append(f"| {run} | {name} | {' '.join(f'{e:.3f}' for e in errs)} | "
                     f"{sum(errs[1:]):.3f} | {lam} | {end} | "
                     f"{kept if name != 'alg2' else '—'} | {results[key]['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
