"""The literature's benchmark: MNIST 1-vs-7, points *added* to the clean set (issue 28).

Run:  OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python bench/bench_literature.py \
          [--eps 1 3 5 10] [--attacks flip strong] [--val random margin ...] \
          [--data-dir ../shared/datasets] > bench/out/literature.md
      python bench/bench_literature.py margins [--restarts 1 3] > bench/out/margins.md
      (secml's protocol: ``strong`` against the exact victim beside max(secml, flip))

Setting (Steinhardt et al. 2017; Koh, Steinhardt & Liang; Suya et al. 2021, 2023):

- clean training set: every '1' and '7' of MNIST's training file (13,007 rows, '7' is label
  1), pixels in ``[0, 1]``; test set: every '1' and '7' of the test file (2,163 rows), never
  seen by the attacker;
- the victim: logistic regression, mean logistic loss + ``0.09/2 ||w||^2`` with the bias not
  penalised, trained to optimality (``hv.victims.Exact``). hvpoison's L2 penalty is
  ``exp(lam) 1/2 ||w||^2`` on the weights only (never the bias) added to the *mean* loss,
  so ``lam = log 0.09``: the same objective. Clean test error: about 2.2 %;
- the attack: ``eps n`` points appended (``placement="add"``) in ``[0, 1]^784``, labels as
  hvpoison's initDp gives them (label-flipped clones of the attacker's validation rows); all
  ``eps n`` points optimised jointly, in one batch (``n_batches = 1``; one run per
  ``eps``), against the Exact victim;
- the attacker's validation set (its objective's data; the defender's ``lam`` is fixed) is
  drawn from the clean training rows by a rule (``--val``, ``RULES``): ``random`` (1000,
  seeded: the paper's Eq. 3), ``all`` (13,007), ``ones`` / ``sevens`` (1000 of one class),
  ``margin7`` (the 1000 correctly classified '7's nearest the clean model's boundary: the
  attacker trains the clean victim itself, it knows the clean set) and ``margin:600`` /
  ``margin`` (1000) / ``margin:2000`` (the rows nearest the boundary, both classes): every
  rule tried while the benchmark was written, looking at test errors;
- **the blind choice** (``selected``): per budget and attack, the rule whose poisoned victim
  errs most by one of the attacker's criteria (``CRITERIA``), so the rule is chosen without
  the test set: ``train``, the error on the *clean training rows* — the attacker's own data,
  all of which the victim trains on; ``cv``, their 2-fold cross-validated error
  (``cv_error``: the victim trained on one half plus the points, scored on the other; an
  estimate of the error on unseen rows; added 2026-12-06 after ``train`` left the four
  boundary rules within 5 rows of each other, and fixed before it was run). That is the
  number to compare with the literature; the per-rule rows show how much the choice
  matters. Each rise carries its paired standard error over the test rows
  (``paired_se_pp``).

Attacks: ``flip`` (the clones, not optimised: the floor) and ``strong`` (``method="strong",
victim="exact"``: the damped implicit hypergradient at the warm-started optimum, Adam,
100 hyperiterations, unchanged). Reported per ``eps``: test error of the victim trained on
the clean set plus the points, the change from the clean error in percentage points, and
the attack's wall-clock time (one BLAS thread).

The published anchor: Suya et al. (NeurIPS 2023, Table 1) report +1.8 percentage points
over a 2.2 % base at ``eps = 3 %`` as the best known attack on this LR.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

for _k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_k, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from common import header  # noqa: E402

import hvpoison as hv  # noqa: E402
from hvpoison.victims import Exact  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out")
WEIGHT_DECAY = 0.09
LAM = math.log(WEIGHT_DECAY)          # exp(lam) 1/2 ||w||^2 on the weights, mean loss
N_VAL = 1000
ANCHOR = {"source": "Suya et al., NeurIPS 2023, Table 1", "eps": 0.03, "base": 0.022,
          "rise_pp": 1.8}


def load_mnist17(data_dir=None):
    """``(Xtr, ytr, Xte, yte)``: every '1' (label 0) and '7' (label 1) of MNIST's training
    and test files, pixels / 255, float64 (files checked against their SHA-256)."""
    from hvpoison.data.formats import read_idx
    from hvpoison.data.sources import DATASETS, locate

    paths = locate("mnist", data_dir, download=True)
    spec = DATASETS["mnist"]["files"]
    out = []
    for split in ("train", "test"):
        images = read_idx(paths[f"{split}_images"], 0x803, spec[f"{split}_images"].sha256)
        labels = read_idx(paths[f"{split}_labels"], 0x801, spec[f"{split}_labels"].sha256)
        keep = (labels == 1) | (labels == 7)
        out += [images[keep].reshape(int(keep.sum()), -1) / 255.0,
                (labels[keep] == 7).astype(np.float64)]
    return out


RULES = ("random", "all", "ones", "sevens", "margin7", "margin:600", "margin", "margin:2000")


def attacker_val(rule, obj, Xtr, ytr, w_clean, m=N_VAL, seed=0):
    """The rows of the clean training set the attacker validates on (see the docstring):
    ``random`` (``m`` seeded), ``all``, ``ones`` / ``sevens`` (``m`` seeded of one class),
    ``margin[:M]`` (the ``M``, default ``m``, correctly classified rows nearest the clean
    boundary, both classes), ``margin7[:M]`` (the same among the '7's)."""
    rng = np.random.default_rng(seed)
    name, _, size = rule.partition(":")
    m = int(size) if size else m
    if name == "random":
        return np.sort(rng.choice(len(Xtr), m, replace=False))
    if name == "all":
        return np.arange(len(Xtr))
    if name in ("ones", "sevens"):
        pool = np.flatnonzero(ytr == (1 if name == "sevens" else 0))
        return np.sort(rng.choice(pool, m, replace=False))
    if name in ("margin", "margin7"):
        z = Xtr @ w_clean[:-1] + w_clean[-1]
        margin = np.where(ytr == 1, z, -z)
        keep = (margin > 0) & ((ytr == 1) if name == "margin7" else True)
        order = np.argsort(np.where(keep, margin, np.inf), kind="stable")
        return np.sort(order[:m])
    raise ValueError(f"--val: expected one of {RULES} (margin and margin7 with :M), "
                     f"got {rule!r}")


def candidates(results, eps, name):
    """The keys ``rule/eps/name`` of attack ``name`` at budget ``eps`` that carry the
    attacker's criterion (``attacker_error``)."""
    return [k for k, r in results.items() if k != "clean" and r["eps"] == eps
            and k.endswith(f"/{name}") and "attacker_error" in r]


CRITERIA = {"train": "attacker_error", "cv": "attacker_cv_error"}


def selected(results, eps, name, criterion="train"):
    """The blind choice among the rules run: the key ``rule/eps/name`` whose poisoned
    victim errs most by the attacker's ``criterion`` (``CRITERIA``; the test set is never
    looked at), or None. ``train``: the error on the *clean training rows*, all of which
    the victim trains on; ``cv``: their cross-validated error (:func:`cv_error`)."""
    field = CRITERIA[criterion]
    keys = [k for k in candidates(results, eps, name) if field in results[k]]
    return max(keys, key=lambda k: (results[k][field], k)) if keys else None


def cv_error(obj, Xtr, ytr, Xp, yp, folds=2, seed=0):
    """The attacker's estimate of the poisoned victim's error on unseen rows, from its own
    data only: the clean rows split into ``folds`` seeded folds; per fold, the victim
    trained on the other folds plus the points ``Xp, yp`` and scored on the fold; the
    errors pooled over all clean rows."""
    parts = np.array_split(np.random.default_rng(seed).permutation(len(Xtr)), folds)
    wrong = 0.0
    for k, held in enumerate(parts):
        keep = np.concatenate([p for j, p in enumerate(parts) if j != k])
        w = Exact().fit(obj, np.concatenate([Xtr[keep], Xp]),
                        np.concatenate([ytr[keep], yp]), LAM)
        wrong += hv.error(obj.model, w, Xtr[held], ytr[held]) * len(held)
    return wrong / len(Xtr)


def paired_se_pp(model, w, w_clean, X, y):
    """The standard error, in percentage points, of the rise in test error from ``w_clean``
    to ``w``, paired over the test rows (the rows' changes ``wrong(w) - wrong(w_clean)``)."""
    d = (np.asarray(model.predict(w, X) != y, float)
         - np.asarray(model.predict(w_clean, X) != y, float))
    return float(100 * d.std(ddof=1) / math.sqrt(len(d)))


def run_attack(name, obj, Xtr, ytr, Xv, yv, n_points, seed=0):
    """``(X, y, seconds)``: the clean set plus ``n_points`` added points of attack ``name``
    (``flip``, ``strong`` or ``strong:K``: ``K`` hyperiterations instead of 100)."""
    method, _, k = name.partition(":")
    kw = dict(method=method, iters=int(k) if k else None)
    t0 = time.perf_counter()
    b = hv.attack(obj, Xtr, ytr, Xv, yv, n_poison=n_points, n_batches=1, lam=LAM,
                  box=(0.0, 1.0), seed=seed, victim="exact", placement="add", **kw)[-1]
    secs = time.perf_counter() - t0
    assert np.array_equal(b.X[:len(Xtr)], Xtr) and b.X.shape[0] == len(Xtr) + n_points
    return b.X, b.y, secs


def attack_name(text):
    """``--attacks``: ``flip``, ``strong`` or ``strong:K`` with ``K`` a positive integer."""
    method, _, k = text.partition(":")
    if text == "flip" or (method == "strong" and (not k or (k.isdigit() and int(k) > 0))):
        return text
    raise argparse.ArgumentTypeError(f"expected flip, strong or strong:K (K > 0), got {text!r}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eps", nargs="+", type=float, default=[1, 3, 5, 10],
                    help="budgets in percent of the clean set")
    ap.add_argument("--attacks", nargs="+", default=["flip", "strong"], type=attack_name,
                    help="flip, strong, or strong:K (K hyperiterations; default 100)")
    ap.add_argument("--val", nargs="+", default=list(RULES),
                    help=f"the attacker's validation rules (default: all of {RULES})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--json", default=os.path.join(OUT, "literature.json"))
    args = ap.parse_args(argv)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    results = json.load(open(args.json)) if os.path.exists(args.json) else {}

    Xtr, ytr, Xte, yte = load_mnist17(args.data_dir)
    obj = hv.Objective(hv.LR(Xtr.shape[1]), "l2")
    t0 = time.perf_counter()
    w_clean = Exact().fit(obj, Xtr, ytr, LAM)
    results["clean"] = {"n_tr": len(Xtr), "n_test": len(Xte),
                        "test_error": hv.error(obj.model, w_clean, Xte, yte),
                        "train_error": hv.error(obj.model, w_clean, Xtr, ytr),
                        "cv_error": cv_error(obj, Xtr, ytr, Xtr[:0], ytr[:0], seed=args.seed),
                        "seconds": time.perf_counter() - t0}
    base = results["clean"]["test_error"]
    print(f"# clean: n = {len(Xtr)}, test {len(Xte)}, test error {base:.4f}", file=sys.stderr)
    for rule in args.val:
        vi = attacker_val(rule, obj, Xtr, ytr, w_clean, seed=args.seed)
        for eps in args.eps:
            n_points = int(round(eps / 100 * len(Xtr)))
            for name in args.attacks:
                key = f"{rule}/{eps:g}/{name}"
                if key in results:
                    continue
                X, y, secs = run_attack(name, obj, Xtr, ytr, Xtr[vi], ytr[vi], n_points,
                                        args.seed)
                w = Exact().fit(obj, X, y, LAM)
                err = hv.error(obj.model, w, Xte, yte)
                results[key] = {"eps": eps, "n_points": n_points, "test_error": err,
                                "rise_pp": 100 * (err - base), "seconds": secs,
                                "val_loss": float(obj.val_loss(w, Xtr[vi], ytr[vi])),
                                "attacker_error": hv.error(obj.model, w, Xtr, ytr),
                                "attacker_cv_error": cv_error(obj, Xtr, ytr, X[len(Xtr):],
                                                              y[len(Xtr):], seed=args.seed),
                                "rise_se_pp": paired_se_pp(obj.model, w, w_clean, Xte, yte),
                                "labels_1": float(y[len(Xtr):].mean())}
                print(f"# {key:<22} {n_points:5d} points  test error {err:.4f} "
                      f"({100 * (err - base):+.2f} pp)  {secs:6.1f} s", file=sys.stderr,
                      flush=True)
                with open(args.json, "w") as f:
                    json.dump(results, f, indent=1)
    print(report(results))


def report(results):
    """Markdown: per validation rule, rows attack x eps; then the blind choice of rule per
    budget and criterion, and the anchor (computed from ``results``)."""
    c = results["clean"]
    cv = f", cross-validated error {c['cv_error']:.4f}" if "cv_error" in c else ""
    lines = [header(), "",
             f"Clean victim: test error {c['test_error']:.4f} on {c['n_test']} test rows "
             f"(training error {c['train_error']:.4f} on {c['n_tr']} rows{cv}).", "",
             "| attacker's validation rows | attack | eps | points | error on the clean "
             "training rows (criterion `train`) | their 2-fold cross-validated error "
             "(criterion `cv`) | test error | change (pp) ± paired SE "
             "| attack time (s) |", "|---|---|---|---|---|---|---|---|---|"]
    keys = [k for k in results if k != "clean"]
    order = {r: i for i, r in enumerate(RULES)}
    for k in sorted(keys, key=lambda k: (order.get(k.split("/")[0], 99), k.split("/")[0],
                                         k.split("/")[2], float(k.split("/")[1]))):
        r = results[k]
        rule, _, name = k.split("/")
        crit = [f"{r[f]:.4f}" if f in r else "—" for f in CRITERIA.values()]
        se = f" ± {r['rise_se_pp']:.2f}" if "rise_se_pp" in r else ""
        lines.append(f"| {rule} | {name} | {r['eps']:g} % | {r['n_points']} | {crit[0]} | "
                     f"{crit[1]} | {r['test_error']:.4f} | {r['rise_pp']:+.2f}{se} | "
                     f"{r['seconds']:.0f} |")
    a = ANCHOR
    lines += ["", "The blind choice: per budget, attack and criterion, the rule whose "
              "poisoned victim errs most by the attacker's criterion (never the test set):",
              "", "| attack | eps | criterion | rules compared | chosen | test error | "
              "change (pp) |", "|---|---|---|---|---|---|---|"]
    names = sorted({k.split("/")[2] for k in keys}, key=lambda n: (n != "flip", len(n), n))
    picks = [(name, eps, crit, selected(results, eps, name, crit)) for name in names
             for eps in sorted({r["eps"] for k, r in results.items() if k != "clean"})
             for crit in CRITERIA]
    for name, eps, crit, k in picks:
        if k is not None:
            r = results[k]
            n = sum(CRITERIA[crit] in results[j] for j in candidates(results, eps, name))
            lines.append(f"| {name} | {eps:g} % | {crit} | {n} | {k.split('/')[0]} | "
                         f"{r['test_error']:.4f} | {r['rise_pp']:+.2f} |")
    lines += ["", f"Published anchor ({a['source']}): +{a['rise_pp']} pp over "
              f"{100 * a['base']:.1f} % at eps = {100 * a['eps']:g} %."]
    for name, eps, crit, k in picks:
        if k is not None and eps == 100 * a["eps"]:
            r = results[k]
            lines.append(f"- `{name}`, the blind choice by `{crit}` (`{k.split('/')[0]}`): "
                         f"{r['rise_pp']:+.2f} pp: "
                         f"{'**above**' if r['rise_pp'] > a['rise_pp'] else '**not above**'}"
                         " the anchor")
    return "\n".join(lines) + "\n"


# -- the margin on secml's protocol (issue 28, part 3) -----------------------------------
FRACTIONS = ("4 %", "8 %", "12 %", "16 %", "20 %")


def secml_recorded(path=os.path.join(HERE, "RESULTS.md")):
    """secml 0.15.6's test errors under the exact victim, per task and seed, as recorded
    in bench/RESULTS.md's section of 2026-12-01 (its tables ``### {task}, victim `exact```,
    rows ``| secml | seed | 0 % | 4 % ... |``): ``{(task, seed): [e_0, ..., e_20]}``. secml's
    virtual environment is not on this machine, so its runs are read, not repeated."""
    out, task = {}, None
    for line in open(path):
        if line.startswith("### ") and "victim `exact`" in line:
            task = line[4:].split(",")[0].strip()
        elif line.startswith("### ") or line.startswith("## "):
            task = None
        elif task and line.startswith("| secml |"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            out[(task, int(cells[1]))] = [float(c.split()[0]) for c in cells[2:8]]
    return out


def protocol_errors(task, seed, name, restarts=1, data_dir=None):
    """Test errors (exact victim) at 0, 4, ..., 20 % of one hvpoison attacker on secml's
    protocol (``bench/attack_protocol.py``: replaced rows), and its time."""
    import attack_protocol as proto

    sp = proto.split(task, seed, data_dir)
    obj = hv.Objective(hv.LR(sp.Xtr.shape[1]), "l2")
    t0 = time.perf_counter()
    batches = hv.attack(obj, sp.Xtr, sp.ytr, sp.Xval, sp.yval, n_poison=proto.N_POISON,
                        n_batches=proto.N_BATCHES, lam=proto.LAM, box=(0.0, 1.0), seed=seed,
                        victim="exact", method=name, restarts=restarts)
    secs = time.perf_counter() - t0
    errs = [hv.error(obj.model, Exact().fit(obj, b.X, b.y, proto.LAM), sp.Xte, sp.yte)
            for b in batches]
    return errs, secs


def margins(argv=None):
    """``python bench/bench_literature.py margins [--restarts 1 3]``: ``strong`` against
    the exact victim beside max(secml, flip), seed for seed, and the issue's targets
    (+0.005 at 4 and 8 %, +0.02 from 12 %)."""
    ap = argparse.ArgumentParser(description=margins.__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=["mnist", "fmnist"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--restarts", nargs="+", type=int, default=[1])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--json", default=os.path.join(OUT, "literature_margins.json"))
    args = ap.parse_args(argv)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    res = json.load(open(args.json)) if os.path.exists(args.json) else {}
    for task in args.tasks:
        for seed in args.seeds:
            for name, rs in [("flip", 1)] + [("strong", r) for r in args.restarts]:
                key = f"{task}/{seed}/{name}" + (f"/r{rs}" if name == "strong" else "")
                if key in res:
                    continue
                errs, secs = protocol_errors(task, seed, name, rs, args.data_dir)
                res[key] = {"test_error": errs, "seconds": secs}
                print(f"# {key:<20} {secs:6.1f} s  " + " ".join(f"{e:.3f}" for e in errs),
                      file=sys.stderr, flush=True)
                with open(args.json, "w") as f:
                    json.dump(res, f, indent=1)
    print(margin_report(res, secml_recorded(), args.restarts))


def margin_report(res, secml, restarts):
    """Markdown: per strong variant, task and seed, the margin over max(secml, flip) at
    each fraction, and whether the targets hold (computed, never typed)."""
    need = (0.005, 0.005, 0.02, 0.02, 0.02)
    lines = [header(), ""]
    for rs in restarts:
        lines += [f"#### `strong`, victim `exact`, restarts = {rs}: test error, and its "
                  "margin over max(secml, flip)", "",
                  "| task | seed | " + " | ".join(FRACTIONS) + " | time (s) |",
                  "|---|---|" + "---|" * (len(FRACTIONS) + 1)]
        ok_all, worst = True, None
        for key in sorted(k for k in res if k.endswith(f"/strong/r{rs}")):
            task, seed = key.split("/")[:2]
            s = res[key]["test_error"][1:]
            f = res.get(f"{task}/{seed}/flip", {}).get("test_error", [None] * 6)[1:]
            sm = secml.get((task, int(seed)))
            cells = []
            for i, e in enumerate(s):
                floor = max(x for x in (f[i], None if sm is None else sm[i + 1])
                            if x is not None)
                gap = e - floor
                ok = gap >= need[i] - 1e-12
                ok_all &= ok
                worst = gap - need[i] if worst is None else min(worst, gap - need[i])
                cells.append(f"{e:.3f} ({gap:+.3f}{'' if ok else ' ✗'})")
            lines.append(f"| {task} | {seed}{'' if sm else ' (no secml run)'} | "
                         + " | ".join(cells) + f" | {res[key]['seconds']:.0f} |")
        lines += ["", f"Targets (+0.005 at 4 and 8 %, +0.02 from 12 %) on every split run: "
                  f"{'**yes**' if ok_all else '**no**'} (smallest excess over the target "
                  f"{worst:+.3f})", ""]
    lines += ["`flip` (the label-flipped clones, not optimised), victim `exact`:", "",
              "| task | seed | 0 % | " + " | ".join(FRACTIONS) + " |",
              "|---|---|" + "---|" * (len(FRACTIONS) + 1)]
    for key in sorted(k for k in res if k.endswith("/flip")):
        task, seed = key.split("/")[:2]
        lines.append(f"| {task} | {seed} | " + " | ".join(f"{e:.3f}" for e in
                                                         res[key]["test_error"]) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:2] == ["margins"]:
        margins(sys.argv[2:])
    else:
        main()
