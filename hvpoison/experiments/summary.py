"""Aggregates over repetitions: mean and std per (setting, fraction) of the test error, the
learned ``lam`` (per component), ``||W_k||^2/P_k`` (per layer), Kuncheva's index (per
``k``) and ``val_loss`` (the validation loss of Eq. 3 after the attack's last step, i.e. the
objective the attacker raises and the learned ``lam`` lowers); with several ``[test]
victims``, ``test_error@V`` and ``val_loss@V`` per victim ``V`` as well; written as
``summary.json`` and a long-format ``summary.csv``."""
from __future__ import annotations

import csv
import io
from collections import defaultdict

import numpy as np

from .store import atomic_write, write_json


def _stats(values):
    a = np.array([np.atleast_1d(np.asarray(v, dtype=float)) for v in values])
    return {"mean": a.mean(axis=0).tolist(), "std": a.std(axis=0).tolist(), "n": len(values)}


#: metrics whose per-repetition values the summary keeps (``"values"``, ``"reps"``), so
#: that two settings run on the same splits can be compared repetition by repetition
PAIRED = ("test_error",)


def aggregate(records: list) -> dict:
    """``{setting: {"fraction": [...], metric: {"mean": [[...]], "std": [[...]], "n": [...]}}}``;
    each metric's mean/std is a list over fractions of lists over components. The test
    errors (:data:`PAIRED`, and ``test_error@V`` per victim) also keep ``"values"`` and
    ``"reps"``: per fraction the value of each repetition and its index, in rep order."""
    groups = defaultdict(list)
    for r in records:
        groups[(r["setting"], r["b"])].append(r)
    out = {}
    for setting in dict.fromkeys(r["setting"] for r in records):
        bs = sorted(b for s, b in groups if s == setting)
        table = {"fraction": [groups[(setting, b)][0]["fraction"] for b in bs]}
        metrics = defaultdict(lambda: {"mean": [], "std": [], "n": []})
        for b in bs:
            rs = groups[(setting, b)]
            vals = {"test_error": [r["test_error"] for r in rs],
                    "w_norm2": [r["w_norm2"] for r in rs]}
            if rs[0]["lam"] is not None:
                vals["lam"] = [r["lam"] for r in rs]
            if rs[0].get("outer_final") is not None:    # the defender's validation loss
                vals["val_loss"] = [r["outer_final"] for r in rs]
            for k in rs[0]["kuncheva"]:
                vals[f"kuncheva@{k}"] = [r["kuncheva"][k] for r in rs]
            for v, t in (rs[0].get("victims") or {}).items():    # [test] victims
                if t is not None:
                    vals[f"test_error@{v}"] = [r["victims"][v]["test_error"] for r in rs]
                    vals[f"val_loss@{v}"] = [r["victims"][v]["val_loss"] for r in rs]
            reps = [r["rep"] for r in rs]
            for m, v in vals.items():
                st = _stats(v)
                for f in ("mean", "std", "n"):
                    metrics[m][f].append(st[f])
                if m.split("@")[0] in PAIRED:           # scalar per repetition
                    by_rep = sorted(zip(reps, (float(np.ravel(x)[0]) for x in v)))
                    metrics[m].setdefault("reps", []).append([r for r, _ in by_rep])
                    metrics[m].setdefault("values", []).append([x for _, x in by_rep])
        table.update(metrics)
        out[setting] = table
    return out


def fixed_lam(summary: dict):
    """The fixed ``lam`` of the ``"large"`` setting of ``summary`` (its ``lam_large``, or for
    a summary written before that key, the ``lam`` its records hold), or None."""
    if summary.get("lam_large") is not None:
        return summary["lam_large"]
    lam = summary.get("settings", {}).get("large", {}).get("lam")
    return None if lam is None else lam["mean"][0][0]


def setting_label(setting: str, summary: dict) -> str:
    """What a defence setting is, by value: ``"λ = -6.9"`` for the fixed ``lam`` (not
    "large"), ``"λ = −∞ (none)"``, ``"λ_CV (clean data)"``, ``"learned λ"``; every table,
    picture and CSV row uses it."""
    if setting == "large":
        v = fixed_lam(summary)
        return "fixed λ" if v is None else f"λ = {v:g}"
    return {"none": "λ = −∞ (none)", "cv": "λ_CV (clean data)", "learned": "learned λ",
            "learned_per_layer": "learned λ per layer"}.get(setting, setting)


def _csv_victim(metric: str, summary: dict) -> str:
    """The test victim a summary metric was measured with (``test_error@exact``: exact; the
    others: the first of ``[test] victims``, the main one)."""
    return metric.split("@")[1] if "@" in metric and not metric.startswith("kuncheva") \
        else summary.get("victims", ["gd"])[0]


#: summary.csv's columns: the numbers, then what produced them
CSV_COLUMNS = ["setting", "fraction", "metric", "component", "mean", "std", "n", "label",
               "task", "model", "penalty", "method", "attack_victim", "test_victim"]


def csv_text(summary: dict) -> str:
    """``summary`` as the long-format ``summary.csv``: one row per (setting, fraction,
    metric, component), each naming its setting by value (``label``), the task, model,
    penalty, the attack's method and victim, and the victim tested."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    task, model, penalty, victim = (summary.get(k) for k in ("task", "model", "penalty",
                                                             "attack_victim"))
    for setting, table in summary["settings"].items():
        label = setting_label(setting, summary)
        methods = table.get("worst_method") or [summary.get("method")] * len(table["fraction"])
        for m, st in table.items():
            if m in ("fraction", "worst_method"):
                continue
            for i, frac in enumerate(table["fraction"]):
                if st["mean"][i] is None:          # method="all": not in the worst method
                    continue
                for c, (mu, sd) in enumerate(zip(st["mean"][i], st["std"][i])):
                    w.writerow([setting, f"{frac:.4f}", m, c, f"{mu:.6g}", f"{sd:.6g}",
                                st["n"][i], label, task, model, penalty, methods[i], victim,
                                _csv_victim(m, summary)])
    return buf.getvalue()


def summarize(exp, store) -> dict:
    """Aggregate the records in ``store``, write ``summary.json`` and ``summary.csv``."""
    records = store.all_records()
    rank = {s: i for i, s in enumerate(exp.defense.settings)}
    records.sort(key=lambda r: (rank.get(r["setting"], 99), r["b"], r["rep"]))
    expected = exp.repetitions * len(exp.defense.settings) * (exp.attack.n_batches + 1)
    summary = {"name": exp.name, "fingerprint": exp.fingerprint(),
               "method": exp.attack.method, "attack_victim": exp.attack.victim,
               "victims": list(exp.test.victims),
               "complete": len(records) == expected, "records": len(records),
               "expected_records": expected, "penalty": exp.defense.penalty,
               "task": exp.data.task, "model": exp.model.kind,
               "lam_large": exp.defense.lam_large if "large" in exp.defense.settings
               else None,
               "seconds": sum(sum(r["seconds"].values()) for r in records),
               "seconds_copied": sum(sum(r["seconds"].values()) for r in records   # of those:
                                     if "copied_from" in r),    # computed by another run
               "settings": aggregate(records)}
    write_json(store.out / "summary.json", summary)
    text = csv_text(summary)
    atomic_write(store.out / "summary.csv", lambda f: f.write(text.encode()))
    return summary


def describe_run(summary: dict) -> str:
    """``"LR on mnist, L2 penalty; attack alg2 against the gd victim; tested on gd"``: what
    produced a summary's numbers, for titles and table headings."""
    victims = summary.get("victims", ["gd"])
    return (f"{summary['model'].upper()} on {summary['task']}, "
            f"{summary['penalty'].upper()} penalty; attack {summary.get('method', 'alg2')}"
            + (f" (worst case of {', '.join(summary['methods'])})" if summary.get("methods")
               else "") + " "
            f"against the {summary.get('attack_victim', 'gd')} victim; tested on "
            f"{' and '.join(victims)}")


def format_table(summary: dict) -> str:
    """Test error (mean ± std) per fraction and setting (one table per test victim), and
    the learned lam, as text."""
    settings = summary["settings"]
    if not settings:
        return "(no records yet)"
    fracs = max((t["fraction"] for t in settings.values()), key=len)
    head = f"{'poisoned':>9} " + " ".join(f"{setting_label(s, summary):>17}"
                                          for s in settings)
    victims = summary.get("victims", ["gd"])
    lines = []
    for j, v in enumerate(victims):
        metric = "test_error" if victims == ["gd"] else f"test_error@{v}"
        lines += [f"test error, mean ± std over repetitions, victim {v} "
                  f"({describe_run(summary)})", head]
        for i, f in enumerate(fracs):
            cells = []
            for t in settings.values():
                if i < len(t["fraction"]) and metric in t:
                    mu, sd = t[metric]["mean"][i][0], t[metric]["std"][i][0]
                    cells.append(f"{mu:>9.3f} ± {sd:<5.3f}")
                else:
                    cells.append(f"{'-':>17}")
            lines.append(f"{f:>9.0%} " + " ".join(cells))
    for s, t in settings.items():                  # method="all": who made each worst case
        if "worst_method" in t:
            lines.append(f"worst case over {', '.join(summary.get('methods', []))} "
                         f"({setting_label(s, summary)}): " + ", ".join(
                             f"{f:.0%} {m}" for f, m in zip(t["fraction"], t["worst_method"])))
    learned = {s: t for s, t in settings.items() if s.startswith("learned") and "lam" in t}
    for s, t in learned.items():
        vals = ", ".join(f"{f:.0%}: " + "/".join(f"{v:+.1f}" for v in m)
                         for f, m in zip(t["fraction"], t["lam"]["mean"]))
        lines.append(f"{setting_label(s, summary)}: {vals}")
    return "\n".join(lines)
