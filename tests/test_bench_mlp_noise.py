"""bench/bench_mlp_noise.py's report: the 3-start and K-start means, and issue 26's
targets recomputed on them, from a synthetic results file (no attack is run)."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
import bench_mlp_noise as bn  # noqa: E402


def _results(strong_20, noise=0.0):
    """One split; per attacker five fractions x 6 starts, the starts alternating -+ by
    ``noise`` (``strong``: by 0.01 at least); ``strong`` at 20 % given."""
    def cells(means, noise=0.0):
        return [[m + noise * (j % 2 * 2 - 1) for j in range(6)] for m in means]

    return {"mnist/0/clean": {"errors": cells([0.01]), "seconds": 0.0},
            "mnist/0/flip": {"errors": cells([0.02, 0.03, 0.04, 0.05, 0.06], noise),
                             "seconds": 1},
            "mnist/0/alg2": {"errors": cells([0.03, 0.03, 0.05, 0.05, 0.07], noise),
                             "seconds": 2},
            "mnist/0/strong/gd": {"errors": cells([0.04, 0.03, 0.04, 0.06, strong_20],
                                                  max(noise, 0.01)),
                                  "seconds": 3}}


def test_targets_on_the_means_and_the_paired_margins():
    lines = bn.targets(_results(0.09), [("mnist", "0")], ["flip", "alg2", "strong/gd"], 6)
    # 8 %: ties alg2 (0.03); 12 %: 0.04 < alg2's 0.05 (the worst, -0.010); 20 %: 0.09 >=
    # flip + 0.02
    assert "at least max(flip, alg2) in 4 of 5 cells (worst -0.010)" in lines[1]
    assert "flip + 0.02 on 1 of 1 splits" in lines[1]
    paired = lines[2]
    assert paired.startswith("  - mnist 0: `strong/gd` − max(flip, alg2), paired over 6")
    assert "+0.020±0.004" in paired            # 0.09 - 0.07, the +-0.01 alternation's s.e.
    lines = bn.targets(_results(0.075), [("mnist", "0")], ["flip", "alg2", "strong/gd"], 6)
    assert "flip + 0.02 on 0 of 1 splits" in lines[1]


def test_report_shows_both_means_and_the_spread_of_one_start():
    text = bn.report(_results(0.09, noise=0.01))
    row = next(line for line in text.splitlines() if line.startswith("| mnist 0 | strong/gd"))
    # starts 0-2 are -, +, -: their mean is 0.09 - 0.01 / 3; all 6 starts: 0.09, s.e.
    # std / sqrt(6) with std = 0.011 (ddof 1)
    assert "| 0.087 / 0.090 ± 0.004 |" in row
    assert "median standard deviation 0.011" in text
    assert "a 3-start mean carries about ±0.006, a 6-start mean ±0.004" in text


def test_pairing_removes_the_noise_the_attackers_share():
    """The same starts for every attacker: a difference common to all starts has no
    spread, however noisy each attacker's own error is."""
    lines = bn.targets(_results(0.09, noise=0.01), [("mnist", "0")],
                       ["flip", "alg2", "strong/gd"], 6)
    assert "+0.020±0.000" in lines[2]


def test_against_sums_the_fractions_paired_over_starts():
    res = _results(0.09, noise=0.01)
    lines = bn.against(res, [("mnist", "0")], ["flip", "alg2", "strong/gd"], 6)
    # flip - strong summed over 4..20 %: (0.20 - 0.26) = -0.06; the same starts' noise
    # cancels in the pair (every attacker alternates alike): no spread
    assert lines[0].startswith("- `flip` − `strong/gd`") and "mnist 0 -0.060±0.000" in lines[0]
    assert "**all splits -0.060 ± 0.000**" in lines[0]
    assert "mnist 0 -0.030±0.000" in lines[1]          # alg2: 0.23 - 0.26


def test_report_names_the_chain_method_all_took():
    res = _results(0.09)
    res["mnist/0/all/gd"] = {**res["mnist/0/strong/gd"],
                             "chosen": ["strong/gd", "alg2", "flip", "strong/gd", "alg2"]}
    text = bn.report(res)
    assert "`all/gd` took, per fraction: mnist 0: strong/gd, alg2, flip, strong/gd, alg2" in text
    assert any(line.startswith("- `all/gd`, 6-start means") for line in text.splitlines())
