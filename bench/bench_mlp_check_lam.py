"""The MLP's ``strong`` with a learned ``lam``: at which ``lam`` its checked iterates are
scored (``check_lam``), paired on the splits of the committed fig. 6/11 runs (issue 26).

Run:  OPENBLAS_NUM_THREADS=1 python bench/bench_mlp_check_lam.py --task mnist --penalty l2 \\
          --reps 0 [--setting learned] [--methods own final alg2] [--starts 3] \\
          [--data-dir ../shared/datasets] > bench/out/check_lam.md
      python bench/bench_mlp_check_lam.py --report [JSON ...]

Why: with a learned ``lam`` Alg. 2 re-initialises ``lam`` (``initL``, -4) every batch, and
the defender's ``lam`` climbs during the batch (to about -1.6 on CIFAR-10). ``strong_mlp``
scores every 4th iterate at the ``lam`` it was reached with, so initDp's points and the first
iterates are scored against a weakly regularised defender, and an earlier iterate can win
for that reason alone. The committed runs show the symptom: the MLP's ``strong`` is at or
above Alg. 2 where ``lam`` is fixed and below it wherever ``lam`` is learned
(reproduce/RESULTS.md). ``check_lam="final"`` scores every candidate at the batch's last
``lam``.

Protocol: the experiment ``protocol.mlp_config(task, penalty)`` (the paper's MLP, ``T =
200``, the task's ``eta`` and step, ``alpha_lam = 0.2``, 5 cumulative batches of 40 points),
repetition ``r``'s split and attack seed as the runner draws them (``runner.seeds``), the
setting ``--setting``; attackers ``own`` (``strong_mlp(check_lam="own")``, as the
committed runs), ``final`` (``strong_mlp(check_lam="final")``, the default since
2026-12-06) and ``alg2``. Each poisoned set, with the
``lam`` the attack returned, is trained by the GD victim from ``--starts`` Xavier draws
(``runner.start_seeds``: the first is the record's own) and scored on the test set; the
same draws for every attacker (paired).
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
from hvpoison.experiments.runner import load_split, seeds, start_seeds, victim  # noqa: E402
from hvpoison.methods import alg2, strong_mlp  # noqa: E402
from hvpoison.victims import as_victim  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
METHODS = {"own": lambda a, k: strong_mlp(k, a, check_lam="own"), "final":
           lambda a, k: strong_mlp(k, a, check_lam="final"), "alg2": lambda a, k: alg2(k, a)}


def run_one(exp, rep, setting, name, starts, data_dir=None, quick=False):
    """One attacker on repetition ``rep``: per fraction the mean test error over ``starts``
    Xavier draws, each draw's, the returned ``lam``, the attacker's objective, seconds.
    Each method takes its own ``iters`` (``quick``: the protocol's small one)."""
    split, sd, a = load_split(exp, rep, data_dir), seeds(exp, rep), exp.attack
    obj, lam, learn = victim(exp, setting, split.Xtr.shape[1])
    t0 = time.perf_counter()
    batches = hv.attack(obj, split.Xtr, split.ytr, split.Xval, split.yval,
                        n_poison=a.n_poison, n_batches=a.n_batches, T=a.T, eta=a.eta,
                        alpha_lam=a.alpha_lam, lam=lam, learn_lam=learn,
                        lam_bounds=tuple(a.lam_bounds), box=split.box, seed=sd["attack"],
                        method=METHODS[name](a.alpha, a.iters if quick else None))
    secs = time.perf_counter() - t0
    gd, rows = as_victim("gd", exp.test.T, exp.test.eta), []
    for b in batches:
        errs = [hv.error(obj.model, gd.fit(obj, b.X, b.y, b.lam, seed=s), split.Xte,
                         split.yte) for s in start_seeds(sd["init"], starts)]
        rows.append({"fraction": b.fraction, "test_error": float(np.mean(errs)),
                     "test_errors": errs, "lam": np.asarray(b.lam).tolist(),
                     "objective": b.trace.get("final"), "best": b.trace.get("best")})
    return {"rows": rows, "seconds": secs}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="mnist", choices=["mnist", "fmnist", "cifar10"])
    ap.add_argument("--penalty", default="l2", choices=["l2", "l1"])
    ap.add_argument("--setting", default="learned", choices=["learned", "learned_per_layer"])
    ap.add_argument("--reps", type=int, nargs="+", default=[0])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--starts", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="the protocol's quick mode (tests)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--json", default=os.path.join(HERE, "out", "check_lam.json"))
    ap.add_argument("--report", nargs="*", metavar="JSON",
                    help="only print the table of these result files (default: --json)")
    args = ap.parse_args(argv)
    results = results_or_report(args, report)
    if results is None:
        return
    exp = Experiment.from_dict(protocol.mlp_config(args.task, args.penalty, args.quick))
    for rep in args.reps:
        for name in args.methods:
            key = (f"{args.task}{'-quick' if args.quick else ''}/{args.penalty}/"
                   f"{args.setting}/r{rep}/{name}/starts{args.starts}")
            if key in results:
                continue
            results[key] = run_one(exp, rep, args.setting, name, args.starts, args.data_dir,
                                   args.quick)
            errs = " ".join(f"{r['test_error']:.3f}" for r in results[key]["rows"])
            print(f"# {key}: {errs}  ({results[key]['seconds']:.0f} s)", file=sys.stderr,
                  flush=True)
            save_results(args.json, results)
    print(report(results))


def report(results):
    """Markdown: per (task, penalty, setting, repetition) the attackers' test errors per
    fraction (mean over the starts), their sum, the returned ``lam`` at 20 %, and which
    iterate the checked recipes returned per batch."""
    lines = [header(), "", "| run | attacker | test error at 0 / 4 / 8 / 12 / 16 / 20 % "
             "(mean over the starts) | sum 4–20 % | lam at 20 % | iterate kept per batch "
             "| attack time (s) |", "|---|---|---|---|---|---|---|"]
    for key in sorted(results):
        run, name = key.rsplit("/", 2)[0], key.rsplit("/", 2)[1]
        rows = results[key]["rows"]
        errs = [r["test_error"] for r in rows]
        kept = " ".join("last" if r["best"] is None else str(r["best"]) for r in rows[1:])
        lam = np.round(np.asarray(rows[-1]["lam"], float), 2).tolist()
        lines.append(f"| {run} | {name} | {' '.join(f'{e:.3f}' for e in errs)} | "
                     f"{sum(errs[1:]):.3f} | {lam} | {kept if name != 'alg2' else '—'} | "
                     f"{results[key]['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
