"""Follow-up runs where a claim is not confirmed: one task, model and penalty of figs. 2/8
(LR) or 6/11 (MLP) with changed attack settings, written to
reproduce/out/inv-<task>-<penalty>[-mlp]-a<alpha>[-al<alpha_lam>]-k<iters>-T<T>/.

Usage: python reproduce/investigate.py cifar10 --alpha 4 [--iters 30] [-T 200]
           [--penalty l2] [--model lr|mlp] [--alpha-lam 0.2] [--settings none]
           [--repetitions 1] [--data-dir DIR]

reproduce/results.py lists every finished investigation in RESULTS.md, with its settings.
"""
import argparse
from pathlib import Path

from hvpoison.experiments import Experiment, format_table, run
from hvpoison.experiments import protocol

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task", choices=protocol.TASKS)
    ap.add_argument("--penalty", default="l2", choices=["l2", "l1"])
    ap.add_argument("--model", default="lr", choices=["lr", "mlp"])
    ap.add_argument("--alpha", type=float, help="default: the protocol's (protocol.ALPHA)")
    ap.add_argument("--alpha-lam", type=float, default=0.2)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("-T", type=int, default=200)
    ap.add_argument("--settings", nargs="+", default=["none"])
    ap.add_argument("--repetitions", type=int, default=1)
    ap.add_argument("--data-dir")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "out"))
    a = ap.parse_args()
    a.alpha = protocol.ALPHA[a.task] if a.alpha is None else a.alpha
    config = protocol.lr_config if a.model == "lr" else protocol.mlp_config
    cfg = config(a.task, a.penalty, settings=a.settings)
    model = "" if a.model == "lr" else "-mlp"
    al = "" if a.alpha_lam == 0.2 else f"-al{a.alpha_lam:g}"
    cfg.update(name=f"inv-{a.task}-{a.penalty}{model}-a{a.alpha:g}{al}-k{a.iters}-T{a.T}",
               repetitions=a.repetitions)
    cfg["attack"].update(alpha=a.alpha, alpha_lam=a.alpha_lam, iters=a.iters, T=a.T)
    cfg["test"].update(T=a.T)
    summary = run(Experiment.from_dict(cfg), Path(a.out) / cfg["name"], n_jobs=a.jobs,
                  data_dir=a.data_dir)
    print(format_table(summary))
