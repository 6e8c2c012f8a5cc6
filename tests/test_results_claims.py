"""reproduce/results.py judges the paper's claims from the numbers: every verdict follows the
summary it is given (none is typed by hand), the summary table is made of the same verdicts,
and the Exact victim's view of a strong run takes its "none" from the GD victim's run."""
import sys
from pathlib import Path

import numpy as np
import pytest

from hvpoison.experiments import protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reproduce"))
import results  # noqa: E402

FR = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]


def table(err, lam=None, val=None, kun=None, std=0.0, n=5):
    """A summary's table for one setting: the metrics lr_verdicts reads, the test error's
    std ``std`` over ``n`` repetitions (0 by default: every difference counts)."""
    t = {"fraction": FR, "test_error": {"mean": [[e] for e in err], "std": [[std]] * len(FR),
                                        "n": [n] * len(FR)}}
    for name, v in (("lam", lam), ("val_loss", val), ("kuncheva@100", kun)):
        if v is not None:
            t[name] = {"mean": [[x] for x in v], "std": [[0.0]] * len(FR)}
    return t


def summary(none=None, large=None, learned=None, cv=None, lam=None, val=None, kun=None):
    """A summary in which the paper's eight claims all hold; arguments replace one series."""
    none = none or [0.02, 0.04, 0.06, 0.08, 0.10, 0.12]
    large = large or [0.03, 0.035, 0.04, 0.045, 0.05, 0.055]
    learned = learned or [0.02, 0.034, 0.041, 0.046, 0.05, 0.056]
    cv = cv or none
    lam = lam or [-10, -3, -1.5, -1.2, -1.0, -0.9]
    val = val or {"none": 0.6, "large": 0.45, "learned": 0.44}
    kun = kun or {"none": [1, 0.6, 0.5, 0.4, 0.35, 0.3], "large": [1, 0.9, 0.8, 0.7, 0.6, 0.5]}
    return {"task": "mnist", "penalty": "l2", "settings": {
        "none": table(none, val=[val["none"]] * 6, kun=kun["none"]),
        "large": table(large, lam=[-1.0] * 6, val=[val["large"]] * 6, kun=kun["large"]),
        "cv": table(cv, lam=[-8.0] * 6, kun=kun["none"]),
        "learned": table(learned, lam=lam, val=[val["learned"]] * 6, kun=kun["large"])}}


def verdicts(s):
    return {claim: ok for claim, _, ok in results.lr_verdicts(s)}


def test_all_claims_hold_on_numbers_made_for_them():
    v = verdicts(summary())
    assert list(v) == list(results.CLAIMS) and all(v.values())


# per claim: the smallest change of the numbers that makes it (and only it) fail
BREAK = {
    "doubles": {"none": [0.05, 0.06, 0.07, 0.08, 0.09, 0.095]},
    "large_costs": {"large": [0.015, 0.035, 0.04, 0.045, 0.05, 0.055]},
    "mitigates": {"large": [0.03, 0.05, 0.07, 0.09, 0.11, 0.13],    # no defence helps:
                  "learned": [0.02, 0.045, 0.065, 0.085, 0.105, 0.125],  # as bad
                  "cv": [0.02, 0.04, 0.06, 0.08, 0.10, 0.14]},
    "close": {"learned": [0.02, 0.034, 0.08, 0.046, 0.05, 0.056]},
    "val_loss": {"val": {"none": 0.6, "large": 0.40, "learned": 0.44}},
    "lam_rises": {"lam": [-10, -9.8, -9.6, -5, -3, -1]},
    "cv": {"cv": [0.02, 0.034, 0.041, 0.046, 0.05, 0.06]},
    "kuncheva": {"kun": {"none": [1, 0.6, 0.5, 0.4, 0.35, 0.3],
                         "large": [1, 0.9, 0.8, 0.5, 0.3, 0.2]}},
}


@pytest.mark.parametrize("claim", list(BREAK))
def test_a_claim_line_follows_its_numbers(claim):
    change = BREAK[claim]
    before, s = summary(), summary(**change)
    v = verdicts(s)
    assert not v[claim] and all(ok for c, ok in v.items() if c != claim), v
    line = {c: ln for c, ln, _ in results.lr_verdicts(s)}[claim]
    assert line.endswith("**not confirmed**")
    assert line != {c: ln for c, ln, _ in results.lr_verdicts(before)}[claim]


def test_the_summary_table_shows_the_verdicts_and_what_was_not_run():
    good, bad = verdicts(summary()), verdicts(summary(**BREAK["mitigates"]))
    text = "\n".join(results.claims_table({("lr", "l2", "mnist", "alg2", "gd"): good,
                                           ("lr", "l2", "mnist", "strong", "gd"): bad}, "l2"))
    rows = {tuple(c.strip() for c in ln.strip("|").split("|")[:3]):
            [c.strip() for c in ln.strip("|").split("|")[3:]]
            for ln in text.splitlines() if ln.startswith("| mnist") or ln.startswith("| f")
            or ln.startswith("| c")}
    col = list(results.SHORT).index("mitigates")
    alg2, strong = rows[("mnist", "alg2", "gd")], rows[("mnist", "strong", "gd")]
    assert alg2[col] == "✓" and alg2[-1] == "8/8" and strong[col] == "✗" and strong[-1] == "7/8"
    assert set(rows[("mnist", "strong", "exact")]) == {"—"}
    assert set(rows[("cifar10", "worst", "gd")]) == {"—"}


def test_the_mlp_summary_table_has_its_own_rows():
    """The MLP (figs. 6 and 11): Alg. 2, the strong attack and the worst case, all against
    the GD victim; an LR verdict never lands in it."""
    good = verdicts(summary())
    text = "\n".join(results.claims_table({("mlp", "l1", "fmnist", "strong", "gd"): good,
                                           ("lr", "l1", "mnist", "alg2", "gd"): good},
                                          "l1", "mlp"))
    assert text.startswith("**MLP, L1** (fig. 11)")
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and "task" not in ln]
    assert [tuple(c.strip() for c in r.strip("|").split("|")[1:3]) for r in rows[:3]] == [
        ("alg2", "gd"), ("strong", "gd"), ("worst", "gd")] and len(rows) == 9
    assert next(r for r in rows if r.startswith("| fmnist | strong")).endswith("| 8/8 |")
    assert set(rows[0].strip("|").split("|")[3:]) == {" — "}


def test_a_difference_within_the_repetitions_noise_is_a_tie_not_a_confirmation():
    """learned 0.119 against none 0.12 at the largest fraction, std 0.02 over 5 repetitions
    and no per-repetition values (unpaired: SE = 0.0141, t(0.975, 8) = 2.306, margin 0.033):
    a tie, shown as ≈ and not counted as confirmed; the same gap with std 0 confirms, and
    learned above none does not."""
    s = summary(learned=[0.02, 0.034, 0.041, 0.046, 0.05, 0.119])
    for k in ("none", "learned"):
        s["settings"][k]["test_error"]["std"] = [[0.02]] * len(FR)
    v = verdicts(s)
    assert v["mitigates"] is None
    line = {c: ln for c, ln, _ in results.lr_verdicts(s)}["mitigates"]
    assert line.endswith("**tie**") and "difference +0.001, 95% margin 0.033, unpaired" in line
    text = "\n".join(results.claims_table({("lr", "l2", "mnist", "alg2", "gd"): v}, "l2"))
    row = next(ln for ln in text.splitlines() if ln.startswith("| mnist | alg2"))
    cells = [c.strip() for c in row.strip("|").split("|")[3:]]
    assert cells[list(results.SHORT).index("mitigates")] == "≈"
    assert cells[-1] == f"{sum(x is True for x in v.values())}/{len(v)}"
    assert results._lower(0.119, 0.12)[0] is True
    assert results._lower(0.12, 0.119, 0.02, 0.02, 5, 5)[0] is False
    assert results._lower(0.05, 0.12, 0.02, 0.02, 5, 5)[0] is True


def test_per_repetition_values_give_a_paired_test():
    """The same means and stds, with each repetition's error kept: learned is below none on
    every split by 0.01 +- 0.001, so the paired test confirms what the unpaired one (std
    0.02 across splits) calls a tie; repetitions only one side has are not paired, and
    fewer than two shared fall back to the unpaired test."""
    none = {r: 0.10 + 0.02 * (r - 2) for r in range(5)}                 # split-to-split 0.02
    learned = {r: none[r] - 0.01 + 0.001 * (r % 2) for r in range(5)}
    mean = lambda d: float(np.mean(list(d.values())))                   # noqa: E731
    std = lambda d: float(np.std(list(d.values())))                     # noqa: E731
    unpaired = results._lower(mean(learned), mean(none), std(learned), std(none), 5, 5)
    paired = results._lower(mean(learned), mean(none), std(learned), std(none), 5, 5,
                            learned, none)
    assert unpaired[0] is None and paired[0] is True and "paired over 5" in paired[1]
    only = {0: learned[0], 7: 0.05}                                     # one shared rep
    assert results._lower(mean(learned), mean(none), std(learned), std(none), 5, 5,
                          only, none)[1].endswith("unpaired")
    s = summary()                                                       # through lr_verdicts
    for k, d in (("none", none), ("learned", learned)):
        t = s["settings"][k]["test_error"]
        t["mean"][-1], t["std"][-1] = [mean(d)], [std(d)]
        t["reps"], t["values"] = [list(d)] * len(FR), [list(d.values())] * len(FR)
    line = {c: ln for c, ln, _ in results.lr_verdicts(s)}["mitigates"]
    assert "paired over 5 repetitions" in line and line.endswith("**confirmed**")


def test_the_worst_case_takes_the_highest_error_of_any_attack():
    a, b = summary(), summary(learned=[0.02, 0.05, 0.07, 0.09, 0.11, 0.115])
    a["name"], b["name"] = "alg2", "strong"
    w, which = results.worst_view([(a, "test_error"), (b, "test_error")])
    err = [m[0] for m in w["settings"]["learned"]["test_error"]["mean"]]
    assert err == [0.02, 0.05, 0.07, 0.09, 0.11, 0.115]
    assert which["learned"] == ["alg2", "strong", "strong", "strong", "strong", "strong"]
    v = verdicts(w)
    assert set(v) == {"doubles", "large_costs", "mitigates", "close", "cv"}
    assert v["mitigates"] and not v["close"]    # learned gets within 0.005 of none at 20 %


def test_the_exact_victims_view_takes_none_from_the_gd_run():
    gd, exact = summary(), summary()
    gd.update(method="strong", attack_victim="gd")
    del exact["settings"]["none"]
    exact.update(method="strong", attack_victim="exact")
    views = protocol.strong_views([gd, exact])
    assert list(views[("mnist", "l2", "exact")]["settings"]) == ["none", "large", "cv",
                                                                 "learned"]
    assert views[("mnist", "l2", "exact")]["settings"]["none"] is gd["settings"]["none"]
    assert protocol.strong_views([exact]) == {}                 # no GD run: no view


def test_strong_experiments_share_the_undefended_records_across_penalties():
    from hvpoison.experiments import Experiment

    exps = {c["name"]: Experiment.from_dict(c) for c in protocol.strong_experiments()}
    assert set(exps) == {f"lr-{t}-{p}-strong-{v}" for t in protocol.TASKS
                         for p, vs in protocol.STRONG.items() for v, _ in vs}
    for t in protocol.TASKS:
        l2, l1 = exps[f"lr-{t}-l2-strong-gd"], exps[f"lr-{t}-l1-strong-gd"]
        assert l2.test.victims == ["gd", "exact"] and l1.test.victims == ["gd"]
        assert l2.fingerprint(undefended=True) == l1.fingerprint(undefended=True)
        assert l2.fingerprint() != l1.fingerprint()
        assert "none" not in exps[f"lr-{t}-l2-strong-exact"].defense.settings
