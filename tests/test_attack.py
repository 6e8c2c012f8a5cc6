"""Alg. 2 on small problems, and the Fig. 1 setting in 2-D."""
import numpy as np
import pytest

import hvpoison as hv
from helpers import blobs


@pytest.fixture(scope="module")
def data():
    X, y = blobs(60, seed=0)
    Xv, yv = blobs(20, seed=1)
    return X, y, Xv, yv


def run(data, **kw):
    X, y, Xv, yv = data
    obj = kw.pop("obj", hv.Objective(hv.LR(2), "l2"))
    args = dict(n_poison=4, n_batches=2, iters=15, T=60, eta=0.5, alpha=0.3, lam=-1.0, seed=3)
    args.update(kw)
    return hv.attack(obj, X, y, Xv, yv, **args)


def test_fixed_lam_attack_raises_validation_loss_and_respects_the_box(data):
    X, y, Xv, yv = data
    obj = hv.Objective(hv.LR(2), "l2")
    box = (-1.5, 1.5)
    batches = run(data, box=box)
    assert [b.fraction for b in batches] == [0.0, 4 / 60, 8 / 60]
    clean = obj.val_loss(hv.unroll(obj, np.zeros(3), X, y, -1.0, 60, 0.5), Xv, yv)
    for prev, b in zip(batches, batches[1:]):
        assert b.trace["final"] > prev.trace["final"]
        # the ascent improved the batch (from iteration 1: the first projection onto the
        # box may clip cloned validation rows that lie outside it, which lowers the loss)
        assert b.trace["final"] > b.trace["outer"][1]
        Xp = b.X[b.poison_idx]
        assert Xp.min() >= box[0] and Xp.max() <= box[1]
        assert b.lam == -1.0
    assert batches[-1].trace["final"] > clean
    # cumulative: batch 2 keeps batch 1's poisoned rows and adds 4 more
    assert set(batches[1].poison_idx) < set(batches[2].poison_idx)
    np.testing.assert_array_equal(batches[2].X[batches[1].poison_idx],
                                  batches[1].X[batches[1].poison_idx])
    # labels of poisoning points are flipped validation labels, rows outside I untouched
    untouched = np.setdiff1d(np.arange(60), batches[2].poison_idx)
    np.testing.assert_array_equal(batches[2].X[untouched], X[untouched])


def test_learned_lam_stays_in_bounds_and_is_traced(data):
    batches = run(data, learn_lam=True, lam=-2.0, lam_bounds=(-3.0, 0.5), alpha_lam=0.4)
    for b in batches:
        lams = np.array(b.trace["lam"], dtype=float)
        assert lams.min() >= -3.0 and lams.max() <= 0.5 and len(lams) == 15
        assert -3.0 <= b.lam <= 0.5


def test_per_layer_lam_for_the_mlp(data):
    obj = hv.Objective(hv.MLP((2, 4, 1), 0.1), "l2", per_layer=True)
    batches = run(data, obj=obj, learn_lam=True, lam=np.array([-2.0, -2.0]), n_batches=1,
                  iters=5)
    assert batches[-1].lam.shape == (2,)
    assert len(batches[-1].trace["outer"]) == 5


def test_same_seed_same_run_different_seed_different_run(data):
    a, b, c = run(data), run(data), run(data, seed=4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.X, y.X)
        assert x.trace == y.trace
    assert not np.array_equal(a[-1].X, c[-1].X)


def test_restarts_keep_the_best(data):
    one = run(data, n_batches=1, restarts=1)
    three = run(data, n_batches=1, restarts=3)
    assert three[-1].trace["final"] >= one[-1].trace["final"] - 1e-12


def test_targeted_attack_lowers_the_loss_on_the_attackers_labels(data):
    Xt, yt = blobs(6, seed=9)
    batches = run(data, target=(Xt, 1 - yt), targeted=True, n_batches=1)
    trace = batches[-1].trace
    assert -trace["final"] < -trace["outer"][0]   # trace holds sign * loss = -loss


def test_fig1_one_point_hurts_unregularised_lr_more_than_l2():
    """Fig. 1 setting: one optimised poisoning point, LR with and without L2."""
    X, y = blobs(20, seed=0, sep=1.0, spread=0.7)
    Xv, yv = blobs(200, seed=1, sep=1.0, spread=0.7)
    rise = {}
    for penalty, lam in ((None, None), ("l2", 0.0)):
        obj = hv.Objective(hv.LR(2), penalty)
        b = hv.attack(obj, X, y, Xv, yv, n_poison=1, n_batches=1, iters=60, T=200, eta=0.5,
                      alpha=0.3, lam=lam, box=(-6.0, 6.0), seed=0)
        err = [hv.error(obj.model, hv.train(obj, bb.X, bb.y, lam, T=200, eta=0.5), Xv, yv)
               for bb in b]
        rise[penalty] = err[1] - err[0]
    assert rise[None] > rise["l2"] and rise[None] > 0


@pytest.mark.parametrize("kw,exc,msg", [
    (dict(n_poison=0), ValueError, "n_poison: expected a positive integer"),
    (dict(n_poison=20, n_batches=4), ValueError, r"n_poison \* n_batches: expected at most"),
    (dict(lam=None, learn_lam=True), ValueError, "lam: expected an initial value"),
    (dict(box=(1.0, 0.0)), ValueError, "box: expected"),
    (dict(lam_bounds=(1.0, -1.0)), ValueError, "lam_bounds: expected"),
    (dict(w_init="ones"), ValueError, "w_init: expected 'zeros' or 'random'"),
    (dict(alpha=0.0), ValueError, "alpha: expected a positive finite number"),
    (dict(n_batches=-1), ValueError, "n_batches: expected a non-negative integer"),
])
def test_attack_bad_input(data, kw, exc, msg):
    with pytest.raises(exc, match=msg):
        run(data, **kw)


def test_init_dp_cycles_a_validation_set_smaller_than_the_batch():
    from hvpoison.attack import _init_dp_rows

    rows = _init_dp_rows(np.random.default_rng(0), 7, 20)
    assert rows.shape == (20,) and set(rows[:7]) == set(range(7)) == set(rows[7:14])
    assert len(set(_init_dp_rows(np.random.default_rng(0), 30, 20))) == 20


@pytest.mark.parametrize("learn, method, restarts", [(False, "alg2", 1), (True, "alg2", 2),
                                                     (True, "flip", 1), (False, "flip", 2)])
def test_attack_reports_progress_without_changing_the_result(learn, method, restarts):
    """issue 27: ``progress=`` counts every hyperiteration, to ``total`` exactly."""
    rng = np.random.default_rng(0)
    y = (np.arange(40) % 2) * 1.0
    X = rng.normal(size=(40, 2)) + np.where(y[:, None] > 0, 1.0, -1.0)
    obj = hv.Objective(hv.LR(2), "l2")
    kw = dict(n_poison=4, n_batches=2, iters=3, lam=-2.0, learn_lam=learn, seed=0,
              method=method, restarts=restarts)
    seen = []
    a = hv.attack(obj, X, y, X[:10], y[:10], progress=lambda *s: seen.append(s), **kw)
    b = hv.attack(obj, X, y, X[:10], y[:10], progress=True, **kw)   # not a terminal: silent
    assert all(np.array_equal(p.X, q.X) for p, q in zip(a, b))
    assert [d for d, _, _ in seen] == list(range(1, len(seen) + 1))
    assert seen[-1][0] == seen[-1][1] and [s[2] for s in seen] == sorted(s[2] for s in seen)
    with pytest.raises(TypeError, match="progress: expected None, True or a callable"):
        hv.attack(obj, X, y, X[:10], y[:10], progress="yes", **kw)


def test_method_all_returns_the_worst_batch_per_fraction_naming_its_method():
    """issue 27: method="all" runs every method (alg2 only against GD) and keeps, per
    fraction, the batch with the highest attacker objective."""
    rng = np.random.default_rng(0)
    y = (np.arange(60) % 2) * 1.0
    X = rng.normal(size=(60, 2)) + np.where(y[:, None] > 0, 1.0, -1.0)
    obj = hv.Objective(hv.LR(2), "l2")
    kw = dict(n_poison=6, n_batches=2, iters=5, lam=-2.0, seed=0)
    worst = hv.attack(obj, X, y, X[:20], y[:20], method="all", **kw)
    each = {m: hv.attack(obj, X, y, X[:20], y[:20], method=m, **kw)
            for m in hv.methods.METHODS}
    for i, b in enumerate(worst):
        assert set(b.trace["methods"]) == set(hv.methods.METHODS)
        best = max(each, key=lambda m: each[m][i].trace["final"])
        assert b.trace["final"] == each[best][i].trace["final"]
        assert np.array_equal(b.X, each[b.method][i].X)
    exact = hv.attack(obj, X, y, X[:20], y[:20], method="all", victim="exact", **kw)
    assert set(exact[-1].trace["methods"]) == {"strong", "flip"}
    with pytest.raises(ValueError, match="alpha: expected None with method='all'"):
        hv.attack(obj, X, y, X[:20], y[:20], method="all", alpha=1.0, **kw)


# -- placement="add": the literature's threat model (points appended, the clean set kept) --
ADD_CASES = {
    "alg2/gd": dict(method="alg2"),
    "strong/gd": dict(method="strong", iters=8, alpha=0.05),
    "strong/exact": dict(method="strong", victim="exact", iters=8, alpha=0.05),
    "flip/gd": dict(method="flip", iters=4, alpha=None),
    "flip/exact": dict(method="flip", victim="exact", iters=4, alpha=None),
}


@pytest.mark.parametrize("name", sorted(ADD_CASES))
def test_add_keeps_every_clean_row_and_grows_by_n_poison_per_batch(data, name):
    X, y, Xv, yv = data
    X0, y0 = X.copy(), y.copy()
    batches = run(data, placement="add", n_batches=3, n_poison=5, **ADD_CASES[name])
    n = X.shape[0]
    assert [b.X.shape[0] for b in batches] == [n, n + 5, n + 10, n + 15]
    assert [b.fraction for b in batches] == [0.0, 5 / n, 10 / n, 15 / n]
    np.testing.assert_array_equal(X, X0)                  # the caller's arrays untouched
    np.testing.assert_array_equal(y, y0)
    for prev, b in zip(batches, batches[1:]):
        np.testing.assert_array_equal(b.X[:n], X0)        # no clean row altered
        np.testing.assert_array_equal(b.y[:n], y0)
        np.testing.assert_array_equal(b.poison_idx, np.arange(n, b.X.shape[0]))
        # cumulative: the earlier batches' points stay as they were
        np.testing.assert_array_equal(b.X[:prev.X.shape[0]], prev.X)
        new = b.X[prev.X.shape[0]:]
        # labels: flipped labels of validation clones (initDp), the same as "replace"
        assert set(np.unique(b.y[prev.X.shape[0]:])) <= {0.0, 1.0}
        assert b.X0.shape == new.shape
        if ADD_CASES[name]["method"] == "flip":            # not optimised: the clones
            np.testing.assert_array_equal(new, b.X0)
            src = [np.flatnonzero((Xv == row).all(axis=1)) for row in new]
            assert all(len(s) >= 1 for s in src)
            assert all(b.y[prev.X.shape[0] + i] == 1 - yv[s[0]] for i, s in enumerate(src))
        else:
            assert not np.array_equal(new, b.X0)           # the points moved


def test_add_raises_the_objective_and_allows_more_points_than_rows(data):
    X, y, Xv, yv = data
    batches = run(data, placement="add", n_poison=20, n_batches=4, iters=6)   # 80 > n = 60
    assert batches[-1].X.shape[0] == 140 and batches[-1].fraction == 80 / 60
    for prev, b in zip(batches, batches[1:]):
        assert b.trace["final"] > prev.trace["final"]
    with pytest.raises(ValueError, match=r"n_poison \* n_batches: expected at most"):
        run(data, n_poison=20, n_batches=4, iters=6)                          # replace


@pytest.mark.parametrize("name", ["alg2/gd", "strong/exact", "flip/gd"])
def test_add_resumes(data, name):
    full = run(data, placement="add", n_batches=3, **ADD_CASES[name])
    rest = run(data, placement="add", n_batches=3, start=(1, full[1].X, full[1].y),
               **ADD_CASES[name])
    assert len(rest) == 2
    for a, b in zip(full[2:], rest):
        np.testing.assert_array_equal(a.X, b.X)
        np.testing.assert_array_equal(a.poison_idx, b.poison_idx)
        assert a.trace == b.trace
    # a start of the wrong size (the clean set, as "replace" would take) is named
    with pytest.raises(ValueError, match=r"start\[1\]: expected the poisoned training set "
                                         r"of shape \(64, 2\)"):
        run(data, placement="add", n_batches=3, start=(1, full[0].X, full[0].y))


@pytest.mark.parametrize("bad", ["x", "Add", None, 1])
def test_placement_bad_values_are_named_in_one_line(data, bad):
    with pytest.raises(ValueError) as info:
        run(data, placement=bad)
    assert str(info.value) == f"placement: expected 'replace' or 'add', got {bad!r}"


def test_replace_is_the_default_and_unchanged(data):
    a, b = run(data), run(data, placement="replace")
    for x, z in zip(a, b):
        np.testing.assert_array_equal(x.X, z.X)
        np.testing.assert_array_equal(x.poison_idx, z.poison_idx)
        assert x.X.shape == data[0].shape
