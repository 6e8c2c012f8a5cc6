"""The victim protocol (hvpoison/victims/__init__.py): the attack and the evaluation ask a
victim for its training and its hypergradient and never test its type, so a victim the
library does not know works unchanged; ``method="all"`` passes every argument on."""
import numpy as np
import pytest

import hvpoison as hv
from hvpoison.victims import RMD, as_victim


class Halved:
    """A victim outside the library: gradient descent for ``T`` steps of half the given
    ``eta`` (delegating to GD), with its own matched hypergradient, RMD through those
    steps."""

    name = "halved"
    methods = ("alg2", "strong", "flip")

    def __init__(self, T, eta):
        self.T, self.eta, self.gd = T, eta / 2, hv.GD(T, eta / 2)

    def fit(self, obj, X, y=None, lam=None, *, seed=0, w0=None):
        return self.gd.fit(obj, X, y, lam, seed=seed, w0=w0)

    def hypergradient(self, memory="store", **options):
        return RMD(memory, **options)

    def resolved(self, obj, data, lam_bounds=None):
        return self

    def trainable(self, obj, X, y, bounds):
        return bounds

    def describe(self):
        return {"eta": self.eta, "victim": self.name}

    def init_kind(self, obj):
        return self.gd.init_kind(obj)

    def initial(self, obj, seed, like):
        return self.gd.initial(obj, seed, like)


def _problem(n=60, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, (n, d))
    y = (X[:, 0] + 0.3 * rng.standard_normal(n) > 0.5).astype(float)
    return hv.Objective(hv.LR(d), "l2"), X, y


def test_a_new_victim_needs_no_change_in_attack_or_evaluate():
    obj, X, y = _problem()
    kw = dict(n_poison=6, n_batches=2, iters=4, lam=-2.0, learn_lam=True)
    ours = hv.attack(obj, X, y, X[:20], y[:20], victim=Halved(30, 0.4), **kw)
    same = hv.attack(obj, X, y, X[:20], y[:20], victim=hv.GD(30, 0.2), **kw)
    assert ours[-1].trace["victim"] == "halved" and ours[-1].trace["eta"] == 0.2
    np.testing.assert_array_equal(ours[-1].X, same[-1].X)        # the same training
    assert ours[-1].lam == same[-1].lam
    e = hv.evaluate(obj, ours[-1].X, ours[-1].y, X, y, ours[-1].lam, victim=ours[-1].victim)
    e_gd = hv.evaluate(obj, same[-1].X, same[-1].y, X, y, same[-1].lam, victim=hv.GD(30, 0.2))
    assert e["test_error"] == e_gd["test_error"]


def test_an_object_without_the_protocol_is_refused_by_name():
    with pytest.raises(ValueError, match="victim: expected one of"):
        as_victim(object())
    with pytest.raises(ValueError, match="victim: expected GD"):
        hv.attack(*_problem()[:3], *_problem()[1:3], victim="exact", method="alg2",
                  lam=-2.0, n_batches=1, n_poison=2)


def test_train_is_the_gd_victims_fit():
    obj, X, y = _problem()
    np.testing.assert_array_equal(hv.train(obj, X, y, -2.0, T=40, eta=0.3),
                                  hv.GD(40, 0.3).fit(obj, X, y, -2.0))


def test_method_all_keeps_the_placement():
    """``method="all"`` runs every method with the caller's other arguments: with
    ``placement="add"`` each batch grows the set (it once ran "replace" silently)."""
    obj, X, y = _problem()
    out = hv.attack(obj, X, y, X[:20], y[:20], method="all", placement="add", n_poison=5,
                    n_batches=2, iters=2, lam=-2.0, learn_lam=True)
    assert [b.X.shape[0] for b in out] == [60, 65, 70]
    np.testing.assert_array_equal(out[-1].X[:60], X)              # clean rows untouched
