"""How much of the MLP attackers' ranking is the scoring's noise? (issue 26)

Run:  OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python bench/bench_mlp_noise.py \
          --tasks mnist --seeds 0 1 2 [--attacks flip alg2 strong/gd bounded1-strong/gd] \
          [--starts 20] [--data-dir ../shared/datasets]
      python bench/bench_mlp_noise.py --report bench/out/mlp_noise*.json

``bench_attack.py --model mlp`` scores every poisoned set by the mean test error of the GD
victim retrained from **3** Xavier starts (seeds 0-2). The victim trains at the edge of
stability, so that mean is itself noisy, and issue 26's targets (``strong`` at least
``max(flip, alg2)`` in every one of 25 cells) compare such means cell by cell. This script
runs the attackers of ``bench_attack.py`` on secml's protocol exactly as it does (same split,
same flip starts, same attack seed), keeps their poisoned sets (``bench/out/mlp_sets/``),
and retrains each from ``--starts`` Xavier starts (seeds ``0 .. starts-1``, the same for
every attacker: paired). Reported per split and fraction:

- the 3-start mean (seeds 0-2: ``bench_attack.py``'s number) and the ``starts``-start mean
  with its standard error (std over starts / sqrt(starts));
- the standard deviation of one start's test error, and hence of a 3-start mean;
- the targets recomputed on the ``starts``-start means, and the paired difference
  ``strong - max(flip, alg2)`` with its standard error (same starts for both).

The attack itself is run once per split (its own random Xavier draws are not repeated), so
the spread reported is the scoring's, not the attack's.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

for _k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_k, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import attack_protocol as proto  # noqa: E402
from bench_attack import MLP_ATTACKS, hv_attack, objective  # noqa: E402
from common import header, merged_results  # noqa: E402

import hvpoison as hv  # noqa: E402
from hvpoison.experiments.protocol import ETA  # noqa: E402
from hvpoison.victims import GD  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")
SETS = os.path.join(OUT, "mlp_sets")
FRACTIONS = [b * proto.N_POISON / proto.N_TR for b in range(proto.N_BATCHES + 1)]


def _kept_path(task, seed, name):
    return os.path.join(SETS, f"{task}-s{seed}-{name.replace('/', '_')}.npz")


def poisoned_sets(name, sp, task, seed):
    """``([(X_b, y_b)], seconds)`` for b = 1..5: from ``mlp_sets/`` when kept, else by
    running the attacker (``bench_attack.hv_attack``) and keeping its poisoned rows."""
    os.makedirs(SETS, exist_ok=True)
    path = _kept_path(task, seed, name)
    rows = proto.init_rows(seed)[0]
    if not os.path.exists(path):
        sets, secs = hv_attack(name, sp, task, seed, "mlp")
        for b, (X, y) in enumerate(sets, 1):         # only the replaced rows ever change
            changed = np.flatnonzero((X != sp.Xtr).any(axis=1) | (y != sp.ytr))
            assert set(changed) <= set(rows[:b * proto.N_POISON]), (name, b)
        np.savez(path, Xp=np.stack([X[rows] for X, _ in sets]),
                 yp=np.stack([y[rows] for _, y in sets]), seconds=secs)
    z = np.load(path)
    sets = []
    for b in range(proto.N_BATCHES):
        X, y = sp.Xtr.copy(), sp.ytr.copy()
        X[rows], y[rows] = z["Xp"][b], z["yp"][b]
        sets.append((X, y))
    return sets, float(z["seconds"])


def chosen(sets, sp, task, seed):
    """Per fraction, the attacker among ``flip``, ``alg2``, ``strong/gd`` whose kept set
    equals ``method="all"``'s (``"?"`` when none kept here does)."""
    kept = {n: poisoned_sets(n, sp, task, seed)[0] for n in ("flip", "alg2", "strong/gd")
            if os.path.exists(_kept_path(task, seed, n))}
    return [next((n for n, other in kept.items() if np.array_equal(other[b][0], X)), "?")
            for b, (X, _) in enumerate(sets)]


def test_errors(X, y, sp, task, starts):
    """Test error of the GD victim retrained on ``(X, y)`` from each Xavier start
    ``0 .. starts-1`` (as ``GD.fit(seed=s)``; a diverged start: NaN)."""
    obj = objective("mlp", sp.Xtr.shape[1])
    victim = GD(200, ETA[task])
    W0 = np.stack([victim.initial(obj, s, X) for s in range(starts)])
    try:
        W = victim.fit_many(obj, X, y, proto.LAM, W0=W0)
    except hv.DivergenceError:
        W = []
        for w0 in W0:
            try:
                W.append(victim.fit(obj, X, y, proto.LAM, w0=w0))
            except hv.DivergenceError:
                W.append(None)
    return [float("nan") if w is None else hv.error(obj.model, w, sp.Xte, sp.yte)
            for w in W]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=list(proto.TASKS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--attacks", nargs="+", default=["flip", "alg2", "strong/gd"],
                    choices=MLP_ATTACKS)
    ap.add_argument("--starts", type=int, default=20)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--json", default=os.path.join(OUT, "mlp_noise.json"))
    ap.add_argument("--report", nargs="+", metavar="JSON", default=None)
    args = ap.parse_args(argv)
    if args.report:
        print(report(merged_results(args.report)))
        return
    results = json.load(open(args.json)) if os.path.exists(args.json) else {}
    for task in args.tasks:
        for seed in args.seeds:
            sp = proto.split(task, seed, args.data_dir)
            for name in ["clean", *args.attacks]:
                key = f"{task}/{seed}/{name}"
                if key in results and len(results[key]["errors"][0]) >= args.starts:
                    continue
                t0 = time.perf_counter()
                if name == "clean":
                    sets, secs = [(sp.Xtr, sp.ytr)], 0.0
                else:
                    sets, secs = poisoned_sets(name, sp, task, seed)
                errs = [test_errors(X, y, sp, task, args.starts) for X, y in sets]
                results[key] = {"errors": errs, "seconds": secs}
                if name == "all/gd":       # which chain each fraction came from
                    results[key]["chosen"] = chosen(sets, sp, task, seed)
                print(f"# {key:<32} attack {secs:6.1f} s, scoring "
                      f"{time.perf_counter() - t0:5.1f} s: "
                      + " ".join(f"{np.nanmean(e):.3f}" for e in errs),
                      file=sys.stderr, flush=True)
                with open(args.json, "w") as f:
                    json.dump(results, f)
    print(report(results))


def _cells(results, task, seed, name):
    """``(n_fractions, starts)`` test errors of one attacker on one split, the clean set
    as fraction 0."""
    return np.array(results[f"{task}/{seed}/clean"]["errors"]
                    + results[f"{task}/{seed}/{name}"]["errors"])


def report(results):
    lines = [header(), ""]
    splits = sorted({tuple(k.split("/")[:2]) for k in results}, key=lambda t: (t[0], int(t[1])))
    names = [n for n in MLP_ATTACKS if any(k.endswith("/" + n) for k in results)]
    K = min(len(v["errors"][0]) for v in results.values())
    pct = " | ".join(f"{f:.0%}" for f in FRACTIONS[1:])
    lines += [f"Test error at {' / '.join(f'{f:.0%}' for f in FRACTIONS[1:])}: the 3-start "
              f"mean (seeds 0-2, `bench_attack.py`'s) and the {K}-start mean ± its standard "
              "error.", "", f"| split | attacker | {pct} | time (s) |",
              "|---|---|" + "---|" * len(FRACTIONS[1:]) + "---|"]
    sd_one = []
    for task, seed in splits:
        for n in names:
            if f"{task}/{seed}/{n}" not in results:
                continue
            E = _cells(results, task, seed, n)[1:, :K]
            sd_one += list(np.nanstd(E, axis=1, ddof=1))
            cells = [f"{np.nanmean(e[:3]):.3f} / {np.nanmean(e):.3f} ± "
                     f"{np.nanstd(e, ddof=1) / np.sqrt(np.isfinite(e).sum()):.3f}" for e in E]
            lines.append(f"| {task} {seed} | {n} | " + " | ".join(cells)
                         + f" | {results[f'{task}/{seed}/{n}']['seconds']:.0f} |")
    sd = float(np.median(sd_one))
    lines += ["", f"One start's test error: median standard deviation {sd:.3f} over the "
              f"cells (so a 3-start mean carries about ±{sd / np.sqrt(3):.3f}, a "
              f"{K}-start mean ±{sd / np.sqrt(K):.3f})."]
    lines += ["", *targets(results, splits, names, K), "", *against(results, splits, names, K)]
    picks = [f"{k.split('/')[0]} {k.split('/')[1]}: {', '.join(v['chosen'])}"
             for k, v in sorted(results.items()) if "chosen" in v]
    if picks:
        lines += ["", "`all/gd` took, per fraction: " + "; ".join(picks)]
    return "\n".join(lines)


def against(results, splits, names, K, ref="strong/gd"):
    """Each attacker's damage summed over the five fractions minus ``ref``'s, paired over
    the same ``K`` starts: per split and over every split both ran, mean ± standard error
    (the splits' variances added)."""
    out = []
    for n in names:
        if n == ref:
            continue
        parts, total, var = [], 0.0, 0.0
        for task, seed in splits:
            if any(f"{task}/{seed}/{m}" not in results for m in (n, ref)):
                continue
            d = (_cells(results, task, seed, n)[1:, :K]
                 - _cells(results, task, seed, ref)[1:, :K]).sum(axis=0)
            se = np.nanstd(d, ddof=1) / np.sqrt(np.isfinite(d).sum())
            parts.append(f"{task} {seed} {np.nanmean(d):+.3f}±{se:.3f}")
            total, var = total + np.nanmean(d), var + se ** 2
        if parts:
            out.append(f"- `{n}` − `{ref}`, test error summed over the fractions, paired "
                       f"over {K} starts: {'; '.join(parts)}; **all splits {total:+.3f} ± "
                       f"{np.sqrt(var):.3f}**")
    return out


def targets(results, splits, names, K):
    """Issue 26's targets per strong variant, on the 3-start and the K-start means, and
    the paired margins over max(flip, alg2) with their standard errors."""
    out = []
    for n in names:
        if "strong" not in n and n != "all/gd":
            continue
        for label, cols in (("3-start", slice(0, 3)), (f"{K}-start", slice(0, K))):
            ok_every, ok20, worst = 0, 0, []
            total = 0
            for task, seed in splits:
                have = [m for m in ("flip", "alg2", n) if f"{task}/{seed}/{m}" in results]
                if len(have) < 3:
                    continue
                F, A, S = (_cells(results, task, seed, m)[1:, cols] for m in have)
                base = np.maximum(np.nanmean(F, 1), np.nanmean(A, 1))
                diff = np.nanmean(S, 1) - base
                total += len(diff)
                ok_every += int((diff >= 0).sum())
                worst.append(float(diff.min()))
                ok20 += int(np.nanmean(S[-1]) >= np.nanmean(F[-1]) + 0.02)
            if total:
                out.append(f"- `{n}`, {label} means: at least max(flip, alg2) in {ok_every} "
                           f"of {total} cells (worst {min(worst):+.3f}); at 20 % at least "
                           f"flip + 0.02 on {ok20} of {len(worst)} splits")
        for task, seed in splits:
            have = [m for m in ("flip", "alg2", n) if f"{task}/{seed}/{m}" in results]
            if len(have) < 3:
                continue
            F, A, S = (_cells(results, task, seed, m)[1:, :K] for m in have)
            rows = []
            for i in range(F.shape[0]):   # paired: the same starts for every attacker
                best = F[i] if np.nanmean(F[i]) >= np.nanmean(A[i]) else A[i]
                d = S[i] - best
                rows.append(f"{np.nanmean(d):+.3f}±{np.nanstd(d, ddof=1) / np.sqrt(K):.3f}")
            out.append(f"  - {task} {seed}: `{n}` − max(flip, alg2), paired over {K} "
                       f"starts: " + ", ".join(rows))
    return out


if __name__ == "__main__":
    main()
