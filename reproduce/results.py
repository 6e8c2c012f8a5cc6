"""Write reproduce/RESULTS.md from the full-mode outputs (never by hand).

Usage: python reproduce/results.py [--out reproduce/out] [--runs reproduce/runs]
                                   [--write reproduce/RESULTS.md]

First every finished experiment in ``--out`` (the run folders, not committed: their records
hold the poisoning points) is copied to ``--runs`` as its ``experiment.json``,
``summary.json`` and ``summary.csv`` (committed, small), with ``fig1.json``; then RESULTS.md
is written from ``--runs`` alone, so it can be regenerated from the repository.

For every figure whose full-mode data exist it prints the settings, the measured numbers
(mean ± std over repetitions), the run time and machine, and one line per claim of the paper
with the numbers that confirm or contradict it. Figures not yet run are listed as such.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from hvpoison.experiments.protocol import (FIGURES, STRONG, TASKS, mlp_strong_experiments,
                                           strong_experiments)
from hvpoison.experiments.protocol import strong_views as protocol_views
from hvpoison.figures.lr import relative_decrease

HERE = Path(__file__).resolve().parent


def _mean(t, metric, comp=0):
    return np.array([m[comp] for m in t[metric]["mean"]])


def _count(t, metric):
    """Repetitions behind each mean of ``metric`` (1 where the summary does not say)."""
    return np.array(t[metric].get("n", [1] * len(t[metric]["mean"])))


def _std(t, metric, comp=0):
    return np.array([m[comp] for m in t[metric]["std"]])


def _verdict(ok):
    """``ok``: True (confirmed), False (not confirmed) or None (a tie: see :func:`_lower`)."""
    return "**tie**" if ok is None else "**confirmed**" if ok else "**not confirmed**"


#: a difference of two mean test errors counts only outside this two-sided confidence
#: interval around zero (Student's t over the repetitions)
CONFIDENCE = 0.95


def _lower(a, b, sa=0.0, sb=0.0, na=1, nb=1, pa=None, pb=None):
    """Whether mean ``a`` (std ``sa`` over ``na`` repetitions, as the summaries store it:
    ``ddof = 0``) is lower than ``b``: True when ``b - a`` is beyond the
    :data:`CONFIDENCE` margin ``t SE`` (``t`` Student's quantile for the degrees of freedom,
    ``SE`` the standard error of the difference), False when ``a >= b``, None (a tie: the
    repetitions cannot tell them apart) in between. With ``pa``, ``pb`` (``{rep: value}``,
    the summaries' per-repetition values) sharing at least two repetitions the test is
    paired over those (the same splits: ``SE`` of the mean of ``b_r - a_r``, ``m - 1``
    degrees of freedom); otherwise unpaired (``sqrt(sa^2 / (na - 1) + sb^2 / (nb - 1))``,
    the sample stds', ``na + nb - 2`` degrees of freedom), which is conservative for runs on
    the same splits. Returns ``(verdict, "difference ..., 95 % margin ...")``."""
    from scipy.stats import t as student

    common = sorted(set(pa) & set(pb)) if pa and pb else []
    if len(common) >= 2:
        d = np.array([pb[r] - pa[r] for r in common])
        diff, se, df = float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))), len(d) - 1
        how = f"paired over {len(d)} repetitions"
    else:
        diff = float(b - a)
        se = float(np.sqrt(sa ** 2 / max(na - 1, 1) + sb ** 2 / max(nb - 1, 1)))
        df, how = na + nb - 2, "unpaired"
    margin = float(student.ppf(0.5 + CONFIDENCE / 2, df)) * se if df >= 1 else 0.0
    ok = True if diff > margin else False if diff <= 0 else None
    return ok, f"difference {diff:+.3f}, {CONFIDENCE:.0%} margin {margin:.3f}, {how}"


def _paired(t, metric, i):
    """``{rep: value}`` of fraction ``i`` of ``metric`` in the table ``t`` (None when the
    summary has no per-repetition values: made before they were kept)."""
    m = t[metric]
    if "values" not in m:
        return None
    return dict(zip(m["reps"][i], m["values"][i]))


def _close(learned, best):
    """The paper's "learned λ stays close to the best": within 0.01 or 25 % of it."""
    return bool(np.all(learned - best <= np.maximum(0.01, 0.25 * best)))


def error_table(s, by=None):
    """Test error per fraction (rows) and setting (columns), mean ± std; with ``by``
    (``{setting: [letter per fraction]}``) the letter of the attack behind each mean
    instead of the std. The learned λ follows where the summary has it."""
    st = s["settings"]
    fr = next(iter(st.values()))["fraction"]
    lines = ["| poisoned | " + " | ".join(st) + " |", "|---" * (len(st) + 1) + "|"]
    for i, f in enumerate(fr):
        cells = [f"{_mean(t, 'test_error')[i]:.3f} " + (f"± {_std(t, 'test_error')[i]:.3f}"
                                                       if by is None else f"({by[k][i]})")
                 for k, t in st.items()]
        lines.append(f"| {f:.0%} | " + " | ".join(cells) + " |")
    if "learned" in st and "lam" in st["learned"]:
        lam = _mean(st["learned"], "lam")
        lines.append("\nlearned λ: " + ", ".join(f"{f:.0%}: {v:+.2f} ± {d:.2f}" for f, v, d in
                                                zip(fr, lam, _std(st["learned"], "lam"))))
    return "\n".join(lines)


# The claims of Sect. V-A/B that lr_verdicts judges, in the order of the summary table.
CLAIMS = {"doubles": "the attack at least doubles the error (none)",
          "large_costs": "the large λ costs clean accuracy",
          "mitigates": "learned λ mitigates",
          "close": "learned λ stays close to the best",
          "val_loss": "learned λ keeps the validation loss lowest",
          "lam_rises": "λ increases with the fraction and levels off",
          "cv": "λ_CV does not protect",
          "kuncheva": "Kuncheva: features fall, regularisation keeps them"}


def lr_claims(s):
    """The claim lines of Sect. V-A/B for one task and penalty, computed from ``s``."""
    return [line for _, line, _ in lr_verdicts(s)]


def lr_verdicts(s):
    """``[(claim, line, ok), ...]``: each claim of :data:`CLAIMS` that ``s`` (a summary with
    the settings none, large and learned) can judge, with the numbers that decide it; ``ok``
    is True, False, or None for a tie (a difference of two means within the noise:
    :func:`_lower`)."""
    st, out = s["settings"], []

    def add(claim, text, ok):
        out.append((claim, f"{text}: {_verdict(ok)}", None if ok is None else bool(ok)))

    none, large, learned = (_mean(st[k], "test_error") for k in ("none", "large", "learned"))
    sd = {k: _std(st[k], "test_error") for k in ("none", "large", "learned")}
    reps = {k: _count(st[k], "test_error") for k in ("none", "large", "learned")}
    sd_learned = sd["learned"]

    def lower(a, i, b, j):          # setting a at fraction i below setting b at j, or a tie
        mean = {"none": none, "large": large, "learned": learned}
        i, j = i % len(mean[a]), j % len(mean[b])
        return _lower(mean[a][i], mean[b][j], sd[a][i], sd[b][j], reps[a][i], reps[b][j],
                      _paired(st[a], "test_error", i), _paired(st[b], "test_error", j))
    add("doubles", f"- the attack against λ = −∞ raises the test error well above the clean "
        f"error (at least doubles it at the largest fraction): {none[0]:.3f} → {none[-1]:.3f}",
        none[-1] >= 2 * none[0])
    best_clean = "none" if none[0] <= learned[0] else "learned"
    costs, why = lower(best_clean, 0, "large", 0)
    add("large_costs", f"- the large constant λ costs accuracy on clean data: {large[0]:.3f} "
        f"vs {none[0]:.3f} (none) and {learned[0]:.3f} (learned) ({why})", costs)
    mitigates, why = lower("learned", -1, "none", -1)
    add("mitigates", f"- learned λ mitigates the attack: at the largest fraction "
        f"{learned[-1]:.3f} (learned) vs {none[-1]:.3f} (none) ({why})", mitigates)
    best = np.minimum(none, large)
    gap = learned - best
    add("close", "- learned λ stays close to the best of none and large at every fraction "
        "(within 0.01 or 25 % of the better error): gaps " + ", ".join(f"{g:+.3f}" for g in gap)
        + " (std of learned: " + ", ".join(f"{d:.3f}" for d in sd_learned) + ")",
        _close(learned, best))
    if all("val_loss" in st[k] for k in ("none", "large", "learned")):
        vl = {k: _mean(st[k], "val_loss")[-1] for k in ("none", "large", "learned")}
        add("val_loss", f"- (what λ is learned for) learned λ keeps the validation loss of "
            f"Eq. 3 lowest at the largest fraction: none {vl['none']:.3f}, large "
            f"{vl['large']:.3f}, learned {vl['learned']:.3f}",
            vl["learned"] <= min(vl["none"], vl["large"]) + 0.01)
    if "lam" in st["learned"]:
        lam = _mean(st["learned"], "lam")
        early, late = lam[2] - lam[0], lam[-1] - lam[-3]
        add("lam_rises", f"- learned λ increases with the fraction ({lam[0]:+.2f} → "
            f"{lam[-1]:+.2f}) and then levels off (rise over the first two steps {early:+.2f},"
            f" over the last two {late:+.2f})", lam[-1] > lam[0] and late < early)
    if "cv" in st:
        cv = _mean(st["cv"], "test_error")
        lam_cv = _mean(st["cv"], "lam")[0]
        add("cv", f"- λ_CV (tuned on clean data, λ_CV = {lam_cv:+.1f}) does not protect: at "
            f"{st['cv']['fraction'][-1]:.0%} {cv[-1]:.3f} vs {none[-1]:.3f} (none) and "
            f"{learned[-1]:.3f} (learned)",
            cv[-1] > learned[-1] + 0.5 * (none[-1] - learned[-1]))
    ks = [m for m in st["none"] if m.startswith("kuncheva@")]
    if ks:
        k = ks[len(ks) // 2]
        kn, kl = _mean(st["none"], k), _mean(st["large"], k)
        add("kuncheva", f"- Kuncheva's index ({k.replace('kuncheva@', 'top ')}) falls with the "
            f"fraction (from the first poisoned fraction on), and regularisation keeps the "
            f"features more stable: none {kn[1]:.2f} → {kn[-1]:.2f}, large {kl[1]:.2f} → "
            f"{kl[-1]:.2f}", kn[-1] < kn[1] and kl[-1] > kn[-1])
    return out


def layer_claims(s):
    """Fig. 7/12: the per-layer lam, and whether the later layers' lam rises faster."""
    t = s["settings"].get("learned_per_layer")
    if t is None:
        return []
    lam = np.array(t["lam"]["mean"])                       # (fractions, layers)
    rows = ", ".join(f"{f:.0%}: " + "/".join(f"{v:+.1f}" for v in r)
                     for f, r in zip(t["fraction"], lam))
    rise = lam[-1] - lam[0]
    return [f"- learned λ per layer (hidden 1 / hidden 2 / output): {rows}",
            f"- the later layers' λ rises faster than the first layer's (rise 0 → "
            f"{t['fraction'][-1]:.0%}: " + " / ".join(f"{r:+.2f}" for r in rise) + "): "
            + _verdict(bool(rise[1:].max() > rise[0]))]


def _judged(s):
    """``{claim: ok}`` of ``s`` (empty without the settings the claims compare)."""
    if not {"none", "large", "learned"} <= set(s["settings"]):
        return {}
    return {claim: ok for claim, _, ok in lr_verdicts(s)}


def _figure(runs, fig):
    """Links to the committed plots of ``fig`` (and the figures drawn from its runs)."""
    return [f"![{f}](runs/{f}.png)\n" for f in FIGURES[fig].shows or (fig,)
            if (runs / f"{f}.png").is_file()]


def section_lr(runs, fig, data):
    lines = [f"## {fig}: {FIGURES[fig].section}", "", *_figure(runs, fig)]
    if data.get("strong") is not None and (runs / f"{fig}-strong.png").is_file():
        lines.append(f"![{fig}-strong](runs/{fig}-strong.png)\n")   # per victim, Alg. 2 dotted
    for s in data["summaries"]:
        meta = _meta(runs, s)
        lines += [f"### {s['model'].upper()}, {s['task']}, {s['penalty'].upper()}",
                  f"settings: {meta['settings']}; run time {s['seconds'] / 60:.1f} min of "
                  f"compute on {meta['machine']}", "", error_table(s), ""]
        if {"none", "large", "learned"} <= set(s["settings"]):
            lines += lr_claims(s) + layer_claims(s) + [""]
        lines += cross_claims(runs, s)
        if data.get("strong") is not None:
            lines += section_strong(runs, s, data["strong"].get((s["task"], s["penalty"])))
    return lines


VICTIMS = {"gd": "the GD victim (the paper's test: `[test] T` gradient steps)",
           "exact": "the Exact victim (trained to optimality by Newton's method)"}


NONE_IS_GD = "; the `none` column is the GD victim's (no optimum without a penalty)"


def strong_runs(model, quick, task, penalty):
    """The experiment dicts of the strong attack on ``(task, penalty)`` for ``model``."""
    runs = mlp_strong_experiments if model == "mlp" else strong_experiments
    return runs(quick, (task,), (penalty,))


def strong_views(runs, task, penalty, quick=False, model="lr"):
    """The strong attack on ``(task, penalty)``: ``(views, done)``, ``done`` ``{victim the
    attack anticipates: its finished run's summary}`` and ``views`` ``{victim: summary with
    the settings none, large, cv and learned}`` (:func:`protocol.strong_views
    <hvpoison.experiments.protocol.strong_views>`: the Exact victim's "none" is the GD
    victim's run's; the MLP: the GD victim only)."""
    done = {c["attack"].get("victim", "gd"): s
            for c in strong_runs(model, quick, task, penalty)
            if (s := _summary(runs, c["name"])) is not None}
    views = {k[2]: v for k, v in protocol_views(list(done.values())).items()}
    return views, done


def worst_view(sources):
    """The worst case over attacks for one victim: ``sources`` ``[(summary, metric), ...]``
    (each attack's run and the metric that is this victim's test error there); per setting
    and fraction the highest mean error of the attacks that ran that setting (its std
    along), and which attack it was. Only the error claims can be judged on it (λ,
    validation loss and Kuncheva's index belong to one attack); λ_CV is kept for its line."""
    settings, which = {}, {}
    for name in dict.fromkeys(k for s, _ in sources for k in s["settings"]):
        runs = [(s["settings"][name], m, s["name"]) for s, m in sources
                if name in s["settings"] and m in s["settings"][name]]
        fr = runs[0][0]["fraction"]
        mean, std, n, by, reps, values = [], [], [], [], [], []
        for i in range(len(fr)):
            t, m, who = max(runs, key=lambda r: r[0][r[1]]["mean"][i][0])
            mean.append(t[m]["mean"][i])
            std.append(t[m]["std"][i])
            n.append(t[m].get("n", [1] * len(fr))[i])
            reps.append(t[m]["reps"][i] if "values" in t[m] else [])
            values.append(t[m]["values"][i] if "values" in t[m] else [])
            by.append(who)
        settings[name] = {"fraction": fr, "test_error": {"mean": mean, "std": std, "n": n,
                                                         "reps": reps, "values": values}}
        if name == "cv":
            settings[name]["lam"] = runs[0][0]["lam"]
        which[name] = by
    return {"settings": settings}, which


def worst_views(alg2, views, done):
    """``{victim: (worst summary, which attack per setting and fraction)}``: for the GD
    victim over Alg. 2 and the strong attack against GD; for the Exact victim over the
    strong attacks against Exact and (its transfer) against GD, "none" the GD victim's."""
    out = {}
    if "gd" in views:
        out["gd"] = worst_view([(alg2, "test_error"), (views["gd"], "test_error")])
    if "exact" in views:
        src = [(views["exact"], "test_error")]
        if "gd" in done:
            src.append(({**done["gd"], "settings": {k: v for k, v in done["gd"]["settings"]
                                                     .items() if k != "none"}},
                        "test_error@exact"))
        out["exact"] = worst_view(src)
    return out


def section_strong(runs, alg2, strong):
    """Beside one Alg. 2 experiment: the same task and penalty under ``method="strong"``,
    per victim, with every claim judged again."""
    head = [f"#### {alg2['task']}, {alg2['penalty'].upper()}, under the strongest attack "
            "(`method=\"strong\"`)", ""]
    if strong is None or not strong[0]:
        return head + ["(not run yet in full mode)", ""]
    views, done = strong
    recipe = ("RMD in float32 + Alg. 2's normalised step, 40 hyperiterations, every 4th "
              "iterate from the flip points on scored as the victim trains (6 Xavier "
              "starts), the best returned (`hvpoison.methods.strong_mlp`)"
              if alg2["model"] == "mlp" else "RMD + Adam against GD, the implicit "
              "hypergradient + Adam against Exact, 100 hyperiterations")
    lines = head + ["For each victim, the attack that anticipates it (`hvpoison.methods."
                    f"strong`: {recipe}); the defender's learned λ takes Alg. 2's "
                    "step [A7] on the exact hypergradient of the validation loss (Eq. 3) "
                    "whatever the attacker does.", ""]
    for v, s in views.items():
        meta = _meta(runs, done[v])
        copied = done[v].get("seconds_copied", 0.0)
        if alg2["model"] == "mlp" and _check_lam(runs, done[v]) == "own":
            lines += [OWN_CHECK_LAM, ""]
        lines += [f"**Against {VICTIMS[v]}** — `{done[v]['name']}`: {meta['settings']}; run "
                  f"time {(done[v]['seconds'] - copied) / 60:.1f} min of compute"
                  + (f" (and {copied / 60:.1f} min in the undefended records it copied)"
                     if copied else "") + f" on {meta['machine']}"
                  + (NONE_IS_GD if v != "gd" else ""), "", error_table(s), ""]
        a, b = _mean(alg2["settings"]["none"], "test_error"), _mean(s["settings"]["none"],
                                                                   "test_error")
        cmp = [f"{k} {_mean(alg2['settings'][k], 'test_error')[-1]:.3f} → "
               f"{_mean(s['settings'][k], 'test_error')[-1]:.3f}" for k in s["settings"]
               if k in alg2["settings"]]
        lines += [f"- beside Alg. 2 (its GD victim), test error at "
                  f"{s['settings']['none']['fraction'][-1]:.0%}: " + ", ".join(cmp)
                  + f" (none: {b[-1] / a[-1]:.2f}× Alg. 2's error)"]
        lines += lr_claims(s) + layer_claims(s)
        other = [k for k in done[v]["settings"] if "test_error@exact" in done[v]["settings"][k]
                 ] if v == "gd" else []
        if other:
            lines.append("- the same points trained by the Exact victim (the attack did not "
                         "anticipate it), at the largest fraction: " + ", ".join(
                             f"{k} {_mean(done[v]['settings'][k], 'test_error@exact')[-1]:.3f}"
                             for k in other))
        lines.append("")
    for v, (w, which) in worst_views(alg2, views, done).items():
        names = sorted({n for by in which.values() for n in by})
        short = {n: chr(ord("a") + i) for i, n in enumerate(names)}
        lines += [f"**The worst case for {VICTIMS[v]}**: per setting and fraction the "
                  "highest error any attack run here caused (a local ascent can miss what "
                  "another finds: the strong attack is not the strongest against every "
                  "setting); the letter names the attack: " + ", ".join(
                      f"{c} = `{n}`" for n, c in short.items())
                  + (NONE_IS_GD if v != "gd" else "") + ".", "",
                  error_table(w, {k: [short[n] for n in by] for k, by in which.items()}),
                  ""]
        lines += lr_claims(w) + [""]
    return lines


def cross_claims(runs, s):
    """The cross-evaluation of ``reproduce/cross_eval.py``, if it was run on this experiment:
    every attack's points against every victim, and the worst case per victim."""
    p = runs / s["name"] / "cross_eval.json"
    if not p.is_file():
        return []
    c = json.loads(p.read_text())
    if c["fingerprint"] != s["fingerprint"]:
        return [f"(cross_eval.json of {s['name']} is from another run: not shown)", ""]
    vs, errs = c["victims"], c["errors"]
    lines = ["Cross-evaluation (`reproduce/cross_eval.py`): the poisoned training set each "
             "attack left at the largest fraction (rows), trained by each victim (columns; "
             "\"lam tuned on val\": the grid λ with the lowest validation loss on those points)"
             f"; {c['seconds'] / 60:.1f} min, {c['date']}.", "",
             "| attack against \\ victim | " + " | ".join(vs) + " |",
             "|---" * (len(vs) + 1) + "|"]
    for a, row in errs.items():
        lines.append(f"| {a} | " + " | ".join(f"{np.mean(row[v]):.3f} ± {np.std(row[v]):.3f}"
                                               if v in row else "" for v in vs) + " |")

    def worst(v):                  # (mean, std, repetitions) of the column's highest mean
        row = max((row[v] for row in errs.values() if v in row), key=np.mean)
        return float(np.mean(row)), float(np.std(row)), len(row)

    (learned, sl, nl) = max(worst("lam tuned on val"), worst("A's learned lam"))
    (none, sn, nn), (large, _, _) = worst("none"), worst("large")
    mitigates, why = _lower(learned, none, sl, sn, nl, nn)
    clean = _mean(s["settings"]["none"], "test_error")[0]
    ok = _close(learned, min(none, large))
    lines += ["", "- against the strongest attack found for each victim (the column maxima):",
              f"  - the attack against λ = −∞ at least doubles the clean error: {clean:.3f} → "
              f"{none:.3f}: {_verdict(none >= 2 * clean)}",
              f"  - learned λ mitigates the attack: {learned:.3f} (learned) vs {none:.3f} "
              f"(none) ({why}): {_verdict(mitigates)}",
              f"  - learned λ stays close to the best of none and large (within 0.01 or 25 %): "
              f"none {none:.3f}, large {large:.3f}, learned {learned:.3f}: {_verdict(ok)}", ""]
    return lines


SHORT = {"doubles": "doubles", "large_costs": "large costs clean", "mitigates":
         "learned mitigates", "close": "learned ≈ best", "val_loss": "val. loss lowest",
         "lam_rises": "λ rises, levels off", "cv": "λ_CV no help", "kuncheva": "Kuncheva"}


def claims_table(verdicts, penalty, model="lr"):
    """The summary at the top of RESULTS.md for one penalty: a row per (task, attack,
    victim), a column per claim of :data:`CLAIMS` -> confirmed (✓) / not confirmed (✗) / a
    tie within the repetitions' noise (≈, counted as not confirmed; :func:`_lower`),
    from ``verdicts[(model, penalty, task, attack, victim)] = {claim: ok}`` (— : not run in
    full mode; blank: that run cannot judge the claim)."""
    strong = STRONG[penalty] if model == "lr" else (("gd", ()),)
    rows = [(t, a, v) for t in TASKS for a, v in
            [("alg2", "gd")] + [(a, v) for v, _ in strong for a in ("strong", "worst")]]
    fig = {("lr", "l2"): "2", ("lr", "l1"): "8", ("mlp", "l2"): "6", ("mlp", "l1"): "11"}[
        (model, penalty)]
    lines = [f"**{model.upper()}, {penalty.upper()}** (fig. {fig})", "",
             "| task | attack | victim | " + " | ".join(SHORT.values()) + " | confirmed |",
             "|---" * (len(SHORT) + 4) + "|"]
    for t, a, v in rows:
        got = verdicts.get((model, penalty, t, a, v))
        cells = ["—" if got is None else "" if c not in got else "≈" if got[c] is None else
                 "✓" if got[c] else "✗" for c in SHORT]
        score = "—" if got is None else f"{sum(v is True for v in got.values())}/{len(got)}"
        lines.append(f"| {t} | {a} | {v} | " + " | ".join(cells) + f" | {score} |")
    return lines + [""]


def section_valsize(runs, fig, data):
    lines = [f"## {fig}: {FIGURES[fig].section}", "", *_figure(runs, fig),
             "| n_val | " + " | ".join(f"{f:.0%}" for f in data["summaries"][0]["settings"]
                                      ["none"]["fraction"]) + " |",
             "|---" * (len(data["summaries"][0]["settings"]["none"]["fraction"]) + 1) + "|"]
    rel = {}
    for s in data["summaries"]:
        r = np.array(data["relative_decrease"][str(s["n_val"])]
                     if str(s["n_val"]) in data["relative_decrease"]
                     else data["relative_decrease"][s["n_val"]])
        rel[s["n_val"]] = r
        lines.append(f"| {s['n_val']} | " + " | ".join(f"{v:+.2f}" for v in r) + " |")
    lines.append("\n(relative decrease of the test error `(E_none − E_learned) / E_none`)\n")
    pos = {n: float(np.mean(r[1:])) for n, r in rel.items()}
    lines.append("- learning λ on the trusted set reduces the error under attack for every "
                 "validation size (mean relative decrease over the poisoned fractions: "
                 + ", ".join(f"{n}: {v:+.2f}" for n, v in pos.items()) + f"): "
                 f"{_verdict(all(v > 0 for v in pos.values()))}")
    sizes = sorted(pos)
    mono = all(pos[a] <= pos[b] for a, b in zip(sizes, sizes[1:]))
    lines.append(f"- a larger trusted set is not necessarily better (the decrease is "
                 f"{'monotone' if mono else 'not monotone'} in n_val): "
                 f"{_verdict(not mono)}")
    s = data["summaries"][0]
    meta = _meta(runs, s)
    lines.append(f"\nsettings: {meta['settings']}\n")
    return lines


def section_fig1(runs, data):
    n, l2 = data["none"], data["l2"]
    lam_map = np.array(data["lam_map"])
    emap = np.array(n["error_map"])
    hurt = emap > np.quantile(emap, 0.9)
    lines = [f"## fig1: {FIGURES['fig1'].section}", "", *_figure(runs, "fig1"),
             f"settings: {json.dumps(data['config'])}; {data['seconds']:.0f} s", "",
             "| | clean val. error | with the optimised point | max of the map |",
             "|---|---|---|---|",
             f"| no regularisation | {n['val_error']['clean']:.3f} | "
             f"{n['val_error']['poisoned']:.3f} | {emap.max():.3f} |",
             f"| L2, λ = {l2['lam']} | {l2['val_error']['clean']:.3f} | "
             f"{l2['val_error']['poisoned']:.3f} | {np.max(l2['error_map']):.3f} |", "",
             f"- one point moves the unregularised boundary far more than the regularised one "
             f"(validation error rise {n['val_error']['poisoned'] - n['val_error']['clean']:+.3f}"
             f" vs {l2['val_error']['poisoned'] - l2['val_error']['clean']:+.3f}): "
             f"{_verdict(n['val_error']['poisoned'] - n['val_error']['clean'] > l2['val_error']['poisoned'] - l2['val_error']['clean'])}",
             f"- the regularised error map is flatter (max {np.max(l2['error_map']):.3f} vs "
             f"{emap.max():.3f}): {_verdict(np.max(l2['error_map']) < emap.max())}",
             f"- the best λ is larger where the point hurts most (mean best λ over the 10 % "
             f"most harmful locations {lam_map[hurt].mean():+.2f} vs elsewhere "
             f"{lam_map[~hurt].mean():+.2f}): {_verdict(lam_map[hurt].mean() > lam_map[~hurt].mean())}",
             ""]
    return lines


def _attack_settings(a):
    if a.get("method", "alg2") == "alg2":
        return f"attack iters {a['iters']}"             # alpha follows, after eta
    own = [k for k in ("iters", "alpha") if a.get(k) is None]
    return (f"attack {a['method']} against {a.get('victim', 'gd')} (its own "
            + " and ".join({"iters": "iters", "alpha": "step"}[k] for k in own)
            + "".join(f", {k} {a[k]}" for k in ("iters", "alpha") if k not in own) + ")")


#: the MLP strong runs made with ``check_lam="own"`` (hvpoison.methods.strong_mlp)
OWN_CHECK_LAM = ("**Its learned-λ rows are a lower bound.** This run scored each checked "
                 "iterate at the λ it was reached with (`check_lam=\"own\"`, the MLP "
                 "recipe before 2026-12-06): with λ restarting at initL every batch, that "
                 "returns the unoptimised flip points in most batches (bench/RESULTS.md, "
                 "2026-12-06, `bench_mlp_check_lam.py`). Read the learned-λ settings on the "
                 "worst case below; reproduce/README.md says more.")


def _check_lam(runs, s):
    """``[attack] check_lam`` of the run of summary ``s`` (``"own"`` for a run made before
    the key existed), or None without its experiment.json."""
    p = runs / s["name"] / "experiment.json"
    if not p.is_file():
        return None
    return json.loads(p.read_text())["config"]["attack"].get("check_lam", "own")


def _meta(runs, s):
    name = s["name"]
    p = runs / name / "experiment.json"
    if not p.is_file():
        return {"settings": "(experiment.json missing)", "machine": "?"}
    m = json.loads(p.read_text())
    c, v = m["config"], m["versions"]
    settings = (f"n_tr {c['data']['n_tr']}, n_val {c['data']['n_val'] or 'default'}, "
                f"n_test {c['data']['n_test']}, {c['repetitions']} repetitions, "
                + _attack_settings(c["attack"]) + f", T {c['attack']['T']}, "
                f"eta {c['attack']['eta']}, "
                + (f"alpha {c['attack']['alpha']}, " if c["attack"].get("method", "alg2") ==
                   "alg2" else "") + "alpha_lam "
                f"{c['attack']['alpha_lam']}, lam_large {c['defense']['lam_large']}, "
                f"lam_init {c['defense']['lam_init']}")
    machine = (f"{v['machine']} ({v['cpus']} cores, {v['platform']}), numpy {v['numpy']}, "
               f"scipy {v['scipy']}, hvpoison {v['hvpoison']}, {m['created'][:10]}")
    return {"settings": settings, "machine": machine}


def _partial(png, runs):
    """Whether the figure ``png`` left out experiments (``"not drawn"`` in the
    ``figN.json`` beside it: a run with ``--tasks``) while ``runs`` has a figure of that name,
    which a partial one must not replace."""
    data = png.with_suffix(".json")
    if png.suffix != ".png" or not (runs / png.name).is_file() or not data.is_file():
        return False
    return "not drawn" in json.loads(data.read_text()).get("sources", {}).values()


def sync(out, runs):
    """Copy the finished experiments' small files from ``out`` to ``runs`` (a figure drawn
    from fewer experiments than it shows, with ``--tasks``, does not replace the committed
    one: redraw it from ``runs``)."""
    import shutil

    runs.mkdir(parents=True, exist_ok=True)
    for f in [out / "fig1.json", out / "fig1-quick.json", *out.glob("fig*.png")]:
        if not f.is_file():
            continue
        if _partial(f, runs):
            fig, _, attack = f.stem.partition("-")
            print(f"{f}: drawn without some of its experiments (--tasks), so not copied over "
                  f"{runs / f.name}; redraw that one: hvpoison reproduce {fig}"
                  + (f" --attack {attack}" if attack else "") + f" --out {runs}",
                  file=sys.stderr)
            continue
        shutil.copyfile(f, runs / f.name)
    for d in out.iterdir() if out.is_dir() else []:
        p = d / "summary.json"
        if p.is_file() and json.loads(p.read_text())["complete"]:
            (runs / d.name).mkdir(exist_ok=True)
            for name in ("experiment.json", "summary.json", "summary.csv", "cross_eval.json"):
                if (d / name).is_file():
                    shutil.copyfile(d / name, runs / d.name / name)


def _summary(runs, name):
    p = runs / name / "summary.json"
    if not p.is_file():
        return None
    s = json.loads(p.read_text())
    return s if s["complete"] else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE / "out"), help="the run folders")
    ap.add_argument("--runs", default=str(HERE / "runs"), help="committed copies")
    ap.add_argument("--write", default=str(HERE / "RESULTS.md"))
    ap.add_argument("--quick", action="store_true", help="read the quick-mode runs (tests)")
    a = ap.parse_args(argv)
    sync(Path(a.out), Path(a.runs))
    runs = Path(a.runs)
    lines = ["# Reproduction results", "",
             "Generated by `python reproduce/results.py` from the full-mode runs (their "
             "summaries are committed in `reproduce/runs/`; not edited by hand). Each claim "
             "line is computed from the numbers above it. An experiment appears once all "
             "its records are done.", ""]
    missing, verdicts = [], {}
    rank = {"fig1": 0, "lr": 1, "mlp": 2, "valsize": 3}   # the sensitivity studies last
    for fig in sorted((f for f in FIGURES.values() if f.section), key=lambda f: rank[f.kind]):
        if fig.kind == "fig1":
            p = runs / ("fig1-quick.json" if a.quick else "fig1.json")
            if p.is_file():
                lines += section_fig1(runs, json.loads(p.read_text()))
            else:
                missing.append("fig1")
            continue
        sums = []
        for cfg in fig.experiments(a.quick):
            s = _summary(runs, cfg["name"])
            if s is None:
                missing.append(cfg["name"])
                continue
            s["n_val"] = cfg["data"].get("n_val")
            sums.append(s)
        if sums and fig.kind == "valsize":
            lines += section_valsize(runs, fig.name, {"summaries": sums, "relative_decrease": {
                s["n_val"]: relative_decrease(s) for s in sums}})
        elif sums and fig.strong:
            strong = {}
            for s in sums:
                key, m = (s["task"], s["penalty"]), fig.kind
                strong[key] = strong_views(runs, *key, quick=a.quick, model=m)
                verdicts[(m, s["penalty"], s["task"], "alg2", "gd")] = _judged(s)
                for v, view in strong[key][0].items():
                    verdicts[(m, s["penalty"], s["task"], "strong", v)] = _judged(view)
                for v, (w, _) in worst_views(s, *strong[key]).items():
                    verdicts[(m, s["penalty"], s["task"], "worst", v)] = _judged(w)
                missing += [c["name"] for c in strong_runs(m, a.quick, *key)
                            if _summary(runs, c["name"]) is None]
            lines += section_lr(runs, fig.name, {"summaries": sums, "strong": strong})
        elif sums:
            lines += section_lr(runs, fig.name, {"summaries": sums})
    if verdicts:
        summary = ["## Summary: the paper's claims under each attack and victim", "",
                   "Each cell is the verdict of the claim line of that experiment below "
                   "(Alg. 2, the paper's attack, against the GD victim; the strongest attack "
                   "found, `method=\"strong\"`, against the victim it anticipates: the GD "
                   "victim, or for L2 the Exact one trained to optimality; `worst`: per "
                   "setting and fraction the highest error any of these attacks caused that "
                   "victim, on which only the error claims are judged). ✓ confirmed, "
                   "✗ not confirmed, ≈ a tie (counted as not confirmed), — not run in full "
                   "mode, blank: not judged there.", "",
                   "A claim that one mean test error is below another (*large costs clean*, "
                   "*learned mitigates*) is confirmed only when the difference lies outside "
                   "the 95 % interval of Student's t around zero over the repetitions; a "
                   "positive difference within it is a tie. Where both summaries keep each "
                   "repetition's error (every LR run and the MLP's strong runs) the test is "
                   "paired over the shared splits; otherwise (the MLP's Alg. 2 runs, "
                   "summarised before those values were kept) it is unpaired, which is "
                   "conservative: the settings share their splits, and a paired test calls "
                   "fewer ties.", ""]
        for model in ("lr", "mlp"):
            for pen in ("l2", "l1"):
                if any(k[:2] == (model, pen) for k in verdicts):
                    summary += claims_table(verdicts, pen, model)
        own = sorted(p.parent.name for p in runs.glob("mlp-*-strong-*/experiment.json")
                     if _check_lam(runs, {"name": p.parent.name}) == "own")
        if own:
            summary += ["The MLP's `strong` columns come from runs made with "
                        "`check_lam=\"own\"` (" + ", ".join(f"`{n}`" for n in own) + "): "
                        "with a learned λ they under-report the attack (see those sections); "
                        "judge the MLP's learned-λ claims on the worst case.", ""]
        summary += ["The claims: " + "; ".join(f"*{SHORT[c]}*: {t}" for c, t in
                                              CLAIMS.items()) + ".", ""]
        lines[4:4] = summary
    inv = sorted(p.parent.name for p in runs.glob("inv-*/summary.json"))
    if inv:
        lines += ["## Investigations", "",
                  "Runs of `reproduce/investigate.py` (one task, changed attack settings), "
                  "made to look into a claim that is not confirmed above.", ""]
        for name in inv:
            s = json.loads((runs / name / "summary.json").read_text())
            lines += [f"### {name} ({s['task']}, {s['model'].upper()}, {s['penalty'].upper()})",
                      f"settings: {_meta(runs, s)['settings']}", "", error_table(s), ""]
    lines += ["## Not run yet in full mode", "",
              ", ".join(missing) if missing else "(every experiment is done)", "",
              "Figs. 3, 5 and 10 are drawn from the fig2/fig8 experiments, figs. 7 and 13 "
              "from fig6's, figs. 12 and 14 from fig11's (no extra runs).", ""]
    Path(a.write).write_text("\n".join(lines))
    print(a.write)


if __name__ == "__main__":
    main()
