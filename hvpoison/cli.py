"""The ``hvpoison`` command line.

Every command prints errors as one line ``hvpoison COMMAND: error: ...`` and exits with 2
(``--debug`` shows the traceback instead); Ctrl-C exits with 130 after keeping every
finished record, so re-running the same command resumes.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np

EXAMPLES = """examples:
  hvpoison demo                                  attack LR on the embedded MNIST subset
  hvpoison attack --task mnist --lam learned --data-dir ../shared/datasets
  hvpoison run experiment.toml --jobs 2          run / resume an experiment
  hvpoison run experiment.toml --scheduler tcp://host:8786     on a Dask cluster
  hvpoison plot results/lr-mnist-l2              test error, lam, ||w||^2/P, Kuncheva
  hvpoison data fetch mnist                      download into ~/.cache/hvpoison
  hvpoison reproduce fig2 --quick               a figure of the paper, small settings
  hvpoison bench --quick                         gradient, H v and RMD timings
  hvpoison check                                 derivatives vs finite differences
"""


# -- check -----------------------------------------------------------------------------------
def _fd(f, x, u, h=1e-5):
    return (f(x + h * u) - f(x - h * u)) / (2 * h)


def _rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / max(np.linalg.norm(b), 1e-300))


def check(seed: int = 0, n: int = 50, d: int = 10) -> list:
    """Relative errors of every derivative against central differences, per model/penalty.

    Returns rows ``(model, penalty, quantity, relative error)``.
    """
    import hvpoison as hv

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(np.float64)
    rows = []
    for model in (hv.LR(d), hv.MLP((d, 8, 4, 1), slope=0.1)):
        for penalty, lam in ((None, None), ("l2", -1.0), ("l1", -2.0)):
            obj = hv.Objective(model, penalty)
            w = rng.normal(size=model.n_params) * 0.5
            v, U = rng.normal(size=model.n_params), rng.normal(size=X.shape)
            pt = obj.at(w, X, y, lam)
            name = f"{type(model).__name__}"
            rows.append((name, penalty, "grad . v",
                         _rel(pt.grad() @ v, _fd(lambda w_: obj.loss(w_, X, y, lam), w, v))))
            rows.append((name, penalty, "H v",
                         _rel(pt.hvp(v), _fd(lambda w_: obj.grad(w_, X, y, lam), w, v))))
            rows.append((name, penalty, "<M_X^T v, U>",
                         _rel(np.sum(pt.hvp_xw(v) * U),
                              _fd(lambda X_: v @ obj.grad(w, X_, y, lam), X, U))))
            if lam is not None:
                rows.append((name, penalty, "M_lam^T v",
                             _rel(pt.hvp_lw(v), _fd(lambda l_: v @ obj.grad(w, X, y, l_),
                                                    lam, 1.0))))
    return rows


def _cmd_check(args) -> int:
    t0 = time.perf_counter()
    rows = check(seed=args.seed)
    worst = max(r[3] for r in rows)
    print(f"{'model':<5} {'penalty':<7} {'quantity':<14} {'rel. error vs finite diff.':>27}")
    for model, penalty, quantity, err in rows:
        print(f"{model:<5} {str(penalty):<7} {quantity:<14} {err:>27.2e}")
    ok = worst <= 1e-6
    print(f"\n{'OK' if ok else 'FAILED'}: worst relative error {worst:.2e} "
          f"(tolerance 1e-6) in {time.perf_counter() - t0:.2f} s")
    return 0 if ok else 1


# -- demo, attack, run, plot -----------------------------------------------------------------
DEMO = {"name": "demo", "repetitions": 1, "seed": 0,
        "data": {"task": "mnist-mini", "n_tr": 1000, "n_test": 2000},
        "model": {"kind": "lr"},
        "defense": {"penalty": "l2", "settings": ["none", "large", "learned"]},
        "attack": {"n_poison": 40, "n_batches": 5, "iters": 30, "T": 200, "eta": 0.1,
                   "alpha": 1.0, "alpha_lam": 0.2},
        "test": {"T": 200, "eta": 0.1, "kuncheva_k": [50, 100, 200]}}


def _run_keywords(args) -> dict:
    """The keywords of :func:`hvpoison.experiments.run` the command's options set (the
    attack's run and its floor's alike)."""
    return {"n_jobs": args.jobs, "scheduler": getattr(args, "scheduler", None),
            "overwrite": args.overwrite, "progress": not args.quiet,
            "data_dir": getattr(args, "data_dir", None)}


def _run_and_report(exp, out, args, title):
    from .experiments import format_table, run
    from .experiments.runner import check
    from .plots import plot_poison, plot_summary

    t0 = time.perf_counter()
    check(exp, out, getattr(args, "data_dir", None))     # a bad key: one line, nothing else
    print(f"{title}\nresults -> {out}/  (re-run the same command to resume)", file=sys.stderr)
    summary = run(exp, out, reuse=getattr(args, "reuse", ()), **_run_keywords(args))
    print(format_table(summary))
    floor = _floor(exp, out, args)
    paths = plot_summary(summary, os.path.join(out, "summary"), floor=floor)
    poison = plot_poison(out, os.path.join(out, "poison"))
    print(f"\nplot: {paths[0]} (and .pdf)"
          + (f"; the poisoning points: {poison[0]}" if poison else "")
          + f"; tables: {out}/summary.csv, {out}/summary.json; "
          f"{time.perf_counter() - t0:.0f} s")
    return summary, floor


def _cmd_demo(args) -> int:
    from .experiments import Experiment

    cfg = {**DEMO, "seed": args.seed}
    if args.quick:
        cfg = {**cfg, "attack": {**DEMO["attack"], "n_batches": 2, "iters": 10},
               "data": {**DEMO["data"], "n_tr": 500, "n_test": 1000}}
        cfg["attack"]["n_poison"] = 25
    exp = Experiment.from_dict(cfg)
    summary, floor = _run_and_report(
        exp, args.out, args,
        "hvpoison demo: the optimal attack (Alg. 2) against logistic regression on the "
        "embedded MNIST 0-vs-8 subset, for lam = none / large constant / learned on the "
        "trusted validation set")
    st = summary["settings"]
    none, learned = st["none"]["test_error"]["mean"], st["learned"]["test_error"]["mean"]
    flip = floor["settings"]["none"]["test_error"]["mean"]
    print(f"\nwithout regularisation the attack raises the test error from {none[0][0]:.3f} "
          f"to {none[-1][0]:.3f} at {st['none']['fraction'][-1]:.0%} poisoning (label "
          f"flipping alone: {flip[-1][0]:.3f}); learning lam on the trusted set keeps it at "
          f"{learned[-1][0]:.3f}.")
    return 0


def _floor(exp, out, args):
    """The floor beside the attack (:meth:`Experiment.floor`: label flipping alone, not
    optimised, on the settings with a fixed lam), run into ``out/floor`` and printed;
    its summary, or None where there is none."""
    from .experiments import format_table, run

    floor = exp.floor()
    if floor is None:
        if exp.attack.method not in ("flip", "all"):
            print("\nno floor computed: every setting learns lam, and label flipping with a "
                  "learned lam costs about what the attack does; --method all runs it beside "
                  "the attack (or --method flip alone)")
        return None
    summary = run(floor, os.path.join(out, "floor"), **_run_keywords(args))
    print("\nthe floor every attack must beat: label flipping alone (initDp's clones, not "
          f"optimised; {os.path.join(out, 'floor')}/)\n" + format_table(summary))
    return summary


def _lam_setting(value):
    if value in ("none", "large", "cv", "learned", "learned_per_layer"):
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected none, large, cv, learned, learned_per_layer or a number, "
            f"got {value!r}") from None


#: the experiment keys ``hvpoison attack`` sets, and the flags that set them: its errors
#: name the flags typed, not the keys of an experiment file the user never wrote
ATTACK_FLAGS = {"defense.lam_large": "--lam", "defense.settings": "--lam",
                "defense.penalty": "--penalty", "attack.eta": "--eta", "test.eta": "--eta",
                "attack.T": "-T", "test.T": "-T", "attack.iters": "--iters",
                "attack.alpha": "--alpha", "attack.n_poison": "--n-poison",
                "attack.n_batches": "--n-batches", "attack.method": "--method",
                "attack.victim": "--victim", "test.victims": "--victims",
                "test.starts": "--test-starts", "attack.check_lam": "--check-lam",
                "data.task": "--task", "data.n_tr": "--n-tr", "data.n_test": "--n-test",
                "model.kind": "--model", "model.hidden": "--hidden",
                "repetitions": "--repetitions", "seed": "--seed"}


def in_flags(message: str, flags=ATTACK_FLAGS) -> str:
    """``message`` with every experiment key replaced by the flag that sets it
    (``defense.lam_large`` -> ``--lam``)."""
    import re

    keys = sorted(flags, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w.-])(" + "|".join(map(re.escape, keys)) + r")(?![\w])")
    return pattern.sub(lambda m: flags[m.group(1)], message)


def attack_out(task, model, penalty, lam, method, victim, victims, seed, starts=1,
               check_lam=None) -> str:
    """The default results folder of ``hvpoison attack``: every choice a natural second run
    changes is in its name (``results/attack-mnist-lr-l2-lam-6.9-alg2-gd-seed0``;
    ``-starts3`` for ``--test-starts 3``, ``-checklam-own`` for ``--check-lam own``), so
    such a run gets its own folder instead of being refused by (or overwriting) the
    first."""
    lam_part = f"lam{lam:g}" if isinstance(lam, float) else lam
    tested = "" if victims in (None, [victim]) else "-test-" + "+".join(victims)
    tested += f"-starts{starts}" if starts != 1 else ""
    tested += f"-checklam-{check_lam}" if check_lam not in (None, "final") else ""
    return os.path.join("results", f"attack-{task}-{model}-{penalty}-{lam_part}-{method}-"
                        f"{victim}{tested}-seed{seed}")


def _cmd_attack(args) -> int:
    try:
        return _attack(args)
    except ValueError as exc:
        raise ValueError(in_flags(str(exc))) from exc


def _attack(args) -> int:
    from .experiments import Experiment

    setting = args.lam
    defense = {"penalty": args.penalty}
    if isinstance(setting, float):
        defense.update(settings=["large"], lam_large=setting)
    else:
        defense["settings"] = [setting]
    from .experiments.protocol import TASK_ETA, attack_alpha   # per-task steps (README)

    eta = args.eta if args.eta is not None else TASK_ETA.get(args.task, 0.1)

    if args.alpha is not None and args.method == "all":
        raise ValueError(f"--alpha: expected no value with --method all (each method takes "
                         f"its own step), got {args.alpha!r}")
    alpha = args.alpha if args.alpha is not None else \
        attack_alpha(args.task, args.method, args.model, args.victim)
    if args.check_lam is not None and not (args.model == "mlp" and
                                           args.method in ("strong", "all")):
        raise ValueError(f"--check-lam: expected no value unless --model mlp and --method "
                         f"strong or all (it sets the MLP's strong recipe), got "
                         f"{args.check_lam!r}")
    model = {"kind": args.model}
    if args.hidden:
        model["hidden"] = args.hidden
    exp = Experiment.from_dict({
        "name": f"attack-{args.task}-{args.model}-{args.penalty}-{args.lam}",
        "repetitions": args.repetitions, "seed": args.seed,
        "data": {"task": args.task, "n_tr": args.n_tr, "n_test": args.n_test},
        "model": model, "defense": defense,
        "attack": {"n_poison": args.n_poison, "n_batches": args.n_batches,
                   "iters": args.iters, "T": args.T, "eta": eta, "alpha": alpha,
                   "method": args.method, "victim": args.victim,
                   "placement": args.placement,
                   **({} if args.check_lam is None else {"check_lam": args.check_lam})},
        "test": {"T": args.T, "eta": eta, "victims": args.victims or [args.victim],
                 "starts": args.test_starts}})
    out = args.out or attack_out(args.task, args.model, args.penalty, args.lam, args.method,
                                 args.victim, args.victims, args.seed, args.test_starts,
                                 args.check_lam)
    _run_and_report(exp, out, args, f"hvpoison attack: {exp.name} (method {args.method} "
                                   f"against victim {args.victim}, eta = {eta}, alpha = "
                                   f"{'the method default' if alpha is None else alpha})")
    return 0


def default_out(name, source="name") -> str:
    """``results/<name>``, refused (naming ``source``) unless it is a folder strictly inside
    ``results/``: an experiment named ``..`` must not write into the working directory."""
    root = os.path.abspath("results")
    out = os.path.abspath(os.path.join(root, name))
    if os.path.dirname(out) != root:
        raise ValueError(f"{source}: name: expected a folder name that stays inside "
                         f"{root}{os.sep}, got {name!r}; rename it or pass --out")
    return os.path.join("results", name)


def _cmd_run(args) -> int:
    from .experiments import Experiment

    exp = Experiment.from_toml(args.experiment)
    out = args.out or default_out(exp.name, args.experiment)
    _run_and_report(exp, out, args, f"hvpoison run: {exp.name} ({args.experiment})")
    return 0


def _cmd_plot(args) -> int:
    from .plots import load_summary, plot_poison, plot_summary

    summary = load_summary(args.results)
    folder = args.results if os.path.isdir(args.results) else \
        os.path.dirname(args.results) or "."
    base = args.out or os.path.join(folder, "summary")
    floor = os.path.join(folder, "floor", "summary.json")      # hvpoison attack / run / demo
    floor = load_summary(floor) if os.path.isfile(floor) else None
    for p in plot_summary(summary, base, floor=floor):
        print(p)
    if os.path.isdir(os.path.join(folder, "records")):      # the poisoning points
        for p in plot_poison(folder, os.path.join(os.path.dirname(base) or ".", "poison")):
            print(p)
    return 0


def _cmd_reproduce(args) -> int:
    from .experiments.protocol import FIGURES as PROTOCOL
    from .figures import FIGURES, reproduce

    names = list(FIGURES) if args.figures == ["all"] else args.figures
    if args.figures == ["all"] and args.attack == "strong":
        names = [n for n in names if PROTOCOL[n].strong]
    for n in names:
        if n not in FIGURES:
            raise ValueError(f"FIGURE: expected one of {list(FIGURES) + ['all']}, got {n!r}")
        PROTOCOL[n].experiments(attack=args.attack)          # --attack fits every figure
    for n in names:
        print(f"{n}: {FIGURES[n]} ({'quick' if args.quick else 'full'} mode"
              + (", strong attack" if args.attack == "strong" else "") + ")", file=sys.stderr)
        paths, secs = reproduce(n, quick=args.quick, out=args.out, n_jobs=args.jobs,
                                data_dir=args.data_dir, progress=not args.quiet,
                                tasks=args.tasks, attack=args.attack,
                                recompute=args.recompute)
        print(f"{n}: {', '.join(map(str, paths))} ({secs:.0f} s)")
    return 0


# -- data, bench -----------------------------------------------------------------------------
def _cmd_data(args) -> int:
    from .data import cache_dir, check, fetch
    from .data.sources import DATASETS, search_dirs

    names = args.datasets or list(DATASETS)
    for n in names:
        if n not in DATASETS:
            raise ValueError(f"DATASET: expected one of {sorted(DATASETS)}, got {n!r}")
    if args.action == "info":
        print("search order: " + " -> ".join(str(d) for d in search_dirs(args.data_dir))
              + " -> download")
        print(f"cache: {cache_dir()}")
        from .data.tasks import TASKS
        for t, (ds, classes, scale, ratio) in TASKS.items():
            print(f"task {t:<11} dataset {ds:<13} classes {classes[0]} vs {classes[1]}, "
                  f"pixels {'[0, 1]' if scale == 'unit' else '[-1, 1]'}, n_val = n_tr * {ratio}")
        print("task synthetic2d  two 2-D Gaussians (Fig. 1)")
        return 0
    if args.action == "fetch":
        for n in names:
            for k, p in fetch(n, force=args.force).items():
                print(f"{n:<14} {k:<13} {p}")
        return 0
    bad = 0
    for n in names:
        for k, (p, status) in check(n, args.data_dir).items():
            bad += status != "ok"
            print(f"{n:<14} {k:<13} {status if status != 'ok' else 'ok (sha256 verified)':<24}"
                  f" {p or ''}")
    return 1 if bad else 0


def _cmd_bench(args) -> int:
    from .benchmarks import engine, header

    print("# hvpoison engine benchmark (CPU, float64)\n")
    print(header())
    print(f"| model | quantity | ms (median, n = {args.n}) |\n|---|---|---|")
    for model, q, ms in engine(n=args.n, quick=args.quick):
        print(f"| {model} | {q} | {ms:.3f} |", flush=True)
    return 0


# -- parser ----------------------------------------------------------------------------------
class _Fmt(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def _positive_int(s):
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def _eta(s):
    """``--eta``: a positive number or "auto"."""
    if s == "auto":
        return s
    try:
        value = float(s)
    except ValueError:
        value = None
    if value is None or not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number or 'auto', got {s!r}")
    return value


def _results_folder(s):
    if not os.path.isfile(os.path.join(s, "experiment.json")):
        raise argparse.ArgumentTypeError(f"expected a results folder (with experiment.json), "
                                         f"got {s!r}")
    return s


def _run_options(p, default_out=None):
    p.add_argument("--out", default=default_out, help="results folder (resumed if it exists)")
    p.add_argument("--jobs", type=_positive_int, default=1,
                   help="local worker processes (records run in parallel)")
    p.add_argument("--overwrite", action="store_true",
                   help="discard the records in --out instead of resuming")
    p.add_argument("--quiet", action="store_true", help="no per-record progress lines")


def build_parser() -> argparse.ArgumentParser:
    """The ``hvpoison`` parser: the global options, then one sub-parser per command."""
    from . import __version__

    p = argparse.ArgumentParser(
        prog="hvpoison", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Optimal poisoning attacks that anticipate hyperparameter learning, and "
                    "how much L1/L2 regularisation learned on a trusted set protects.",
        epilog=EXAMPLES)
    p.add_argument("--version", action="version", version=f"hvpoison {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_demo, _add_attack, _add_run, _add_plot, _add_reproduce, _add_data,
                _add_bench, _add_check):
        add(sub)
    return p


def _add_demo(sub):
    c = sub.add_parser("demo", formatter_class=_Fmt, help="the main job on the embedded data",
                       description="Attack LR on the embedded MNIST 0-vs-8 subset at 0-20 %% "
                       "poisoning for lam none / large / learned; print the table, write a "
                       "plot. Offline, about a minute on 2 cores.",
                       epilog="example:\n  hvpoison demo --out demo-results --jobs 2")
    _run_options(c, "hvpoison-demo")
    c.add_argument("--seed", type=int, default=0, help="seed of the split and the attack")
    c.add_argument("--quick", action="store_true", help="smaller and faster (for tests)")
    c.set_defaults(func=_cmd_demo)


def _add_attack(sub):
    c = sub.add_parser("attack", formatter_class=_Fmt, help="attack one lam setting",
                       description="Alg. 2 at cumulative poisoning fractions against one "
                       "victim; records, table and plot go to --out.",
                       epilog="examples:\n  hvpoison attack --task mnist-mini --lam none\n"
                       "  hvpoison attack --task mnist-mini --lam learned --method all\n"
                       "  hvpoison attack --task mnist-mini --lam -6.9 --method strong "
                       "--victim exact --victims exact gd\n"
                       "  hvpoison attack --task fmnist --model mlp --lam learned_per_layer "
                       "--data-dir ../shared/datasets")
    _attack_problem_options(c)
    _attack_method_options(c)
    c.add_argument("--repetitions", type=_positive_int, default=1)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--data-dir", help="directory with the dataset files (else $HVPOISON_DATA, "
                   "the cache, a download)")
    _run_options(c)
    c.set_defaults(func=_cmd_attack)


def _attack_problem_options(c):
    """``hvpoison attack``: the task, the model and the defence."""
    c.add_argument("--task", default="mnist-mini",
                   help="mnist | fmnist | cifar10 | mnist-mini | synthetic2d")
    c.add_argument("--model", default="lr", choices=["lr", "mlp"])
    c.add_argument("--hidden", type=_positive_int, nargs="+", help="MLP hidden widths (32 16)")
    c.add_argument("--penalty", default="l2", choices=["l2", "l1"])
    c.add_argument("--lam", type=_lam_setting, default="learned",
                   help="none | large | cv | learned | learned_per_layer | a fixed value")
    c.add_argument("--n-tr", type=_positive_int, default=1000)
    c.add_argument("--n-test", type=_positive_int, default=2000)
    c.add_argument("--n-poison", type=_positive_int, default=40)
    c.add_argument("--n-batches", type=int, default=5)


def _attack_method_options(c):
    """``hvpoison attack``: the attack's method, its victim and its steps."""
    c.add_argument("--method", default="alg2", choices=["alg2", "strong", "flip", "all"],
                   help="alg2: the paper's Alg. 2; strong: the strongest recipe measured per "
                   "victim and model (not the strongest in every setting); flip: initDp's "
                   "label-flipped points, not optimised (the floor); all: every method, and "
                   "the worst case per setting and fraction with the method that made it "
                   "(use all for the worst case)")
    c.add_argument("--victim", default="gd", choices=["gd", "exact"],
                   help="how the defender trains, as the attack anticipates it: gd (T steps, "
                   "the paper's) or exact (to optimality; LR with L2 only)")
    c.add_argument("--victims", nargs="+", choices=["gd", "exact"],
                   help="victims that train each poisoned set for the test error (default: "
                   "--victim)")
    c.add_argument("--test-starts", type=_positive_int, default=1,
                   help="MLP: train each poisoned set from this many Xavier draws and report "
                   "the mean test error (one start's error can vary by about 0.1 on MNIST)")
    c.add_argument("--check-lam", choices=["final", "own"], default=None,
                   help="the MLP's strong with a learned lam: score its checked iterates at "
                   "the batch's last lam (final, the default) or each at its own (own, the "
                   "recipe before 2026-12-06)")
    c.add_argument("--iters", type=_positive_int, default=None,
                   help="hyperiterations per batch (default: 30 for alg2, 100 for strong, "
                   "40 for the MLP's strong)")
    c.add_argument("--placement", default="replace", choices=["replace", "add"],
                   help="replace: each batch takes clean rows' places (the paper's); add: "
                   "appended, the clean set kept (the literature's threat model)")
    c.add_argument("-T", type=_positive_int, default=200, help="inner gradient steps")
    c.add_argument("--eta", type=_eta, default=None,
                   help="inner step, or 'auto' (c / L from the Hessian) (default per task: "
                        "about 1.4/L, see README)")
    c.add_argument("--alpha", type=float, default=None,
                   help="outer step for X_p (alg2, and strong on the MLP: the normalised "
                   "step's length, 4 for cifar10, 1 otherwise; strong on LR: Adam's step as a "
                   "fraction of the box, 0.02)")


def _add_run(sub):
    c = sub.add_parser("run", formatter_class=_Fmt, help="run or resume an experiment file",
                       description="Run the experiment described by a TOML file (see "
                       "hvpoison.experiments.config); resumes what is already in --out.",
                       epilog="examples:\n  hvpoison run exp.toml --jobs 2\n"
                       "  hvpoison run exp.toml --scheduler tcp://10.0.0.5:8786")
    c.add_argument("experiment", metavar="EXPERIMENT", help="a .toml file")
    c.add_argument("--scheduler", metavar="ADDRESS", help="run on this Dask scheduler")
    c.add_argument("--data-dir", help="directory with the dataset files")
    c.add_argument("--reuse", metavar="RESULTS", type=_results_folder, action="append",
                   default=[], help="copy the undefended ('none') records from this results "
                   "folder when its experiment differs only in [defense] (repeatable)")
    _run_options(c)
    c.set_defaults(func=_cmd_run)


def _add_plot(sub):
    c = sub.add_parser("plot", formatter_class=_Fmt, help="plot a results folder",
                       description="Test error, learned lam, ||w||^2/P and Kuncheva's index "
                       "vs the poisoning fraction, as PNG and PDF.",
                       epilog="example:\n  hvpoison plot results/demo --out fig/demo")
    c.add_argument("results", metavar="RESULTS", help="a results folder or its summary.json")
    c.add_argument("--out", help="output path without suffix (default RESULTS/summary)")
    c.set_defaults(func=_cmd_plot)


def _add_reproduce(sub):
    c = sub.add_parser("reproduce", formatter_class=_Fmt, help="regenerate a figure of the paper",
                       description="Draw a figure from the finished summaries of its "
                       "experiments in --out (a copy of the committed reproduce/runs/ "
                       "works: seconds, no dataset), running (or resuming) only those whose "
                       "summary is missing, or all with --recompute; write its data (JSON) "
                       "and plot (PNG, PDF). --quick takes minutes; the full protocol is in "
                       "reproduce/README.md.",
                       epilog="examples:\n  hvpoison reproduce fig1\n"
                       "  cp -r reproduce/runs /tmp/runs && hvpoison reproduce fig2 fig6 "
                       "--out /tmp/runs\n"
                       "  hvpoison reproduce fig2 fig5 --quick --data-dir ../shared/datasets\n"
                       "  hvpoison reproduce all --jobs 2\n"
                       "  hvpoison reproduce fig2 fig8 --attack strong --jobs 2")
    c.add_argument("figures", nargs="+", metavar="FIGURE",
                   help="fig1 .. fig14 (see reproduce/README.md), or all")
    c.add_argument("--tasks", nargs="+", metavar="TASK",
                   help="restrict figs. 2-14 to these tasks (mnist fmnist cifar10)")
    c.add_argument("--quick", action="store_true", help="small settings (minutes)")
    c.add_argument("--attack", default="alg2", choices=["alg2", "strong"],
                   help="the paper's Alg. 2, or the strongest attack found (fig2, fig8: "
                   "one run per victim it anticipates; reproduce/README.md)")
    c.add_argument("--out", default=os.path.join("reproduce", "out"),
                   help="output folder, and where the summaries are looked for")
    c.add_argument("--recompute", action="store_true",
                   help="run (or resume) every experiment of the figure again instead of "
                   "redrawing it from the finished summaries in --out")
    c.add_argument("--jobs", type=_positive_int, default=1, help="local worker processes")
    c.add_argument("--data-dir", help="directory with the dataset files")
    c.add_argument("--quiet", action="store_true", help="no per-record progress lines")
    c.set_defaults(func=_cmd_reproduce)


def _add_data(sub):
    c = sub.add_parser("data", formatter_class=_Fmt, help="fetch, check or describe datasets",
                       description="fetch: download into the cache (checksums verified); "
                       "check: verify the files found; info: search order and tasks.",
                       epilog="examples:\n  hvpoison data info\n"
                       "  hvpoison data check --data-dir ../shared/datasets\n"
                       "  hvpoison data fetch mnist fashion-mnist")
    c.add_argument("action", choices=["fetch", "check", "info"])
    c.add_argument("datasets", nargs="*", metavar="DATASET",
                   help="mnist | fashion-mnist | cifar10 (default: all)")
    c.add_argument("--data-dir", help="directory searched before the cache")
    c.add_argument("--force", action="store_true", help="fetch: download again")
    c.set_defaults(func=_cmd_data)


def _add_bench(sub):
    c = sub.add_parser("bench", formatter_class=_Fmt, help="time gradient, H v and RMD",
                       description="Median times of loss+gradient, H v, the mixed products "
                       "and one RMD hypergradient for LR and the MLP (see bench/ for peers).",
                       epilog="example:\n  hvpoison bench --quick")
    c.add_argument("-n", type=_positive_int, default=1000, help="training rows")
    c.add_argument("--quick", action="store_true", help="fewer repetitions")
    c.set_defaults(func=_cmd_bench)


def _add_check(sub):
    c = sub.add_parser("check", formatter_class=_Fmt,
                       help="verify the derivative engine against finite differences",
                       description="Every derivative of the engine (gradient, H v, the mixed "
                       "products) against central finite differences, for LR and the MLP "
                       "with no, L2 and L1 penalty; exit 1 when one exceeds 1e-6.",
                       epilog="example:\n  hvpoison check --seed 3")
    c.add_argument("--seed", type=int, default=0, help="seed of the random problems")
    c.set_defaults(func=_cmd_check)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            return args.func(args)
    except KeyboardInterrupt:
        print(f"\nhvpoison {args.command}: interrupted; finished records are kept, run the "
              "same command again to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for the user, traceback with --debug
        if args.debug:
            raise
        msg = str(exc) or type(exc).__name__
        if not isinstance(exc, (ValueError, TypeError, OSError)):
            msg = f"{type(exc).__name__}: {msg} (run with --debug for the traceback)"
        print(f"hvpoison {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
