"""Follow-up runs where a claim is not confirmed: one figure-2 task and penalty with changed
attack settings, written to reproduce/out/inv-<task>-<penalty>-a<alpha>-k<iters>-T<T>/.

Usage: python reproduce/investigate.py cifar10 --alpha 4 [--iters 30] [-T 200]
           [--penalty l2] [--settings none] [--repetitions 1] [--data-dir DIR]

reproduce/results.py lists every finished investigation in RESULTS.md, with its settings.
"""
import argparse
from pathlib import Path

from hvpoison.experiments import Experiment, format_table, run
from hvpoison.figures import lr

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task", choices=lr.TASKS)
    ap.add_argument("--penalty", default="l2", choices=["l2", "l1"])
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("-T", type=int, default=200)
    ap.add_argument("--settings", nargs="+", default=["none"])
    ap.add_argument("--repetitions", type=int, default=1)
    ap.add_argument("--data-dir")
    ap.add_argument("--out", default=str(HERE / "out"))
    a = ap.parse_args()
    cfg = lr.config(a.task, a.penalty, settings=tuple(a.settings))
    cfg.update(name=f"inv-{a.task}-{a.penalty}-a{a.alpha:g}-k{a.iters}-T{a.T}",
               repetitions=a.repetitions)
    cfg["attack"].update(alpha=a.alpha, iters=a.iters, T=a.T)
    cfg["test"].update(T=a.T)
    summary = run(Experiment.from_dict(cfg), Path(a.out) / cfg["name"], data_dir=a.data_dir)
    print(format_table(summary))
