"""``[attack] method = "all"``: every method of :data:`hvpoison.methods.METHODS` that
applies to the attack's victim, each run as its own experiment in ``OUT/<method>/``, and
the worst case per setting and fraction (the highest mean test error of the main test
victim) with the method that produced it, in ``OUT/summary.json`` / ``summary.csv``.

``"strong"`` is the strongest recipe measured per victim and model, not the strongest in
every setting (on CIFAR-10 with a learned lam against the GD victim, Alg. 2 does more
damage): the worst case needs every method.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..attack import methods_for
from .store import Store, atomic_write, write_json


def sub_experiments(exp) -> dict:
    """``{method: Experiment}``: ``exp`` with each applicable method (named ``NAME-METHOD``)."""
    return {m: dataclasses.replace(exp, name=f"{exp.name}-{m}",
                                   attack=dataclasses.replace(exp.attack, method=m))
            for m in methods_for(exp.attack.victim)}


def worst_case(summaries: dict, name: str) -> dict:
    """The summary of the worst case over ``summaries`` (``{method: summary}``): per
    setting and fraction, every metric of the method whose mean test error is highest
    there, and ``worst_method``, its name (the first listed on ties)."""
    first = next(iter(summaries.values()))
    out = {**{k: v for k, v in first.items() if k != "settings"}, "name": name,
           "method": "all", "methods": list(summaries),
           "complete": all(s["complete"] for s in summaries.values()),
           "records": sum(s["records"] for s in summaries.values()),
           "expected_records": sum(s["expected_records"] for s in summaries.values()),
           "seconds": sum(s["seconds"] for s in summaries.values()), "settings": {}}
    for setting in first["settings"]:
        tables = {m: s["settings"][setting] for m, s in summaries.items()
                  if setting in s["settings"]}
        n = min(len(t["fraction"]) for t in tables.values())
        merged = {"fraction": next(iter(tables.values()))["fraction"][:n], "worst_method": []}
        for i in range(n):
            m = max(tables, key=lambda k: tables[k]["test_error"]["mean"][i][0])
            merged["worst_method"].append(m)
            for metric, st in tables[m].items():
                if metric in ("fraction", "worst_method"):
                    continue
                row = merged.setdefault(metric, {f: [] for f in st})
                for f, vals in st.items():
                    row.setdefault(f, []).append(vals[i] if i < len(vals) else None)
        out["settings"][setting] = merged
    return out


def run_all(exp, out, run_one, **kw) -> dict:
    """Run every applicable method of ``exp`` with ``run_one(sub, OUT/method, **kw)``
    (:func:`hvpoison.experiments.run`), then write and return the worst case."""
    from .summary import csv_text

    out = Path(out)
    summaries = {m: run_one(sub, out / m, **kw) for m, sub in sub_experiments(exp).items()}
    worst = worst_case(summaries, exp.name)
    with Store(out).lock():
        write_json(out / "summary.json", worst)
        text = csv_text(worst)
        atomic_write(out / "summary.csv", lambda f: f.write(text.encode()))
    return worst
