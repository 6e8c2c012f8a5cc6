"""Several gradient-descent trainings as one blocked computation (issue 26, item 3):
``GD.fit_many`` / ``unroll_many`` / ``Objective.grad_many`` / ``MLP.forward_grad_many``
equal ``K`` separate runs of Eq. 6, their gradient matches finite differences, and
``RMD.final`` over fixed ``eval_starts`` gives the value the separate trainings gave."""
import numpy as np
import pytest

import hvpoison as hv
from helpers import assert_matches_fd, fd_direction
from hvpoison.attack import Context
from hvpoison.hypergrad import DivergenceError, unroll_many
from hvpoison.methods import RMD
from hvpoison.victims import GD

#: (penalty, per_layer, lam) of the objective: L2, L1, one lam per layer, no penalty
PENALTIES = [("l2", False, np.log(1e-3)), ("l1", False, -4.0),
             ("l2", True, np.array([-3.0, -5.0, -2.0])),
             ("l1", True, np.array([-4.0, -6.0, -5.0])), (None, False, None)]
IDS = ["l2", "l1", "l2-per-layer", "l1-per-layer", "none"]


def _data(n=80, d=12, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.random((n, d)).astype(dtype)
    y = (rng.random(n) < 0.5).astype(dtype)
    return X, y


def _mlp(penalty, per_layer, d=12, sizes=(7, 5)):
    return hv.Objective(hv.MLP((d, *sizes, 1), slope=0.1), penalty, per_layer=per_layer)


def _starts(obj, K, dtype):
    return np.stack([obj.model.init(s, dtype=dtype) for s in range(K)])


def _close(got, want, rtol):
    """Entry-wise to ``rtol``, with an absolute floor at ``rtol`` times the largest entry
    (an entry near zero carries the others' rounding)."""
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max())


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-4)],
                         ids=["float64", "float32"])
@pytest.mark.parametrize("penalty, per_layer, lam", PENALTIES, ids=IDS)
def test_the_blocked_fit_is_k_separate_fits_for_the_mlp(penalty, per_layer, lam, dtype, rtol):
    obj = _mlp(penalty, per_layer)
    X, y = _data(dtype=dtype)
    W0 = _starts(obj, 4, dtype)
    gd = GD(60, 0.3)
    got = gd.fit_many(obj, X, y, lam, W0=W0)
    want = np.stack([gd.fit(obj, X, y, lam, w0=w0) for w0 in W0])
    assert got.shape == W0.shape and got.dtype == dtype
    _close(got, want, rtol)
    np.testing.assert_array_equal(W0, _starts(obj, 4, dtype))      # W0 is not written


@pytest.mark.parametrize("sizes", [(), (6,), (6, 5, 4)], ids=["no-hidden", "one", "three"])
def test_the_blocked_fit_holds_for_any_depth(sizes):
    """``L = 1`` (a linear output on ``X``), two and four layers: each layer's line."""
    obj = _mlp("l2", True, sizes=sizes) if sizes else _mlp("l2", False, sizes=sizes)
    lam = np.full(obj.n_lam, -3.0) if sizes else -3.0
    X, y = _data()
    W0 = _starts(obj, 3, np.float64)
    gd = GD(40, 0.3)
    _close(gd.fit_many(obj, X, y, lam, W0=W0),
           np.stack([gd.fit(obj, X, y, lam, w0=w0) for w0 in W0]), 1e-10)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-4)],
                         ids=["float64", "float32"])
@pytest.mark.parametrize("penalty", ["l2", "l1", None])
def test_lr_trains_its_starts_through_the_fallback(penalty, dtype, rtol):
    """LR has no blocked pass of its own: :meth:`Model.forward_grad_many` runs one
    ``forward_grad`` per start, so every model has ``fit_many``."""
    obj = hv.Objective(hv.LR(12), penalty)
    lam = None if penalty is None else -2.0
    X, y = _data(dtype=dtype)
    W0 = np.random.default_rng(3).normal(size=(3, obj.model.n_params)).astype(dtype)
    gd = GD(50, 0.5)
    _close(gd.fit_many(obj, X, y, lam, W0=W0),
           np.stack([gd.fit(obj, X, y, lam, w0=w0) for w0 in W0]), rtol)


@pytest.mark.parametrize("penalty, per_layer, lam", PENALTIES, ids=IDS)
def test_the_stacked_gradient_is_each_starts_gradient(penalty, per_layer, lam):
    """Row ``j`` of ``grad_many`` is ``linearize(W[j]).grad()`` and matches central
    differences of ``L(w; D, lam)`` along a random direction."""
    obj = _mlp(penalty, per_layer)
    X, y = _data()
    data = obj.prepare(X, y, lam)
    rng = np.random.default_rng(1)
    W = _starts(obj, 3, np.float64) + 0.1 * rng.normal(size=(3, obj.model.n_params))
    G = obj.grad_many(W, data)
    for j in range(W.shape[0]):
        _close(G[j], obj.linearize(W[j], data).grad(), 1e-12)
        u = rng.normal(size=W.shape[1])
        fd = fd_direction(lambda w: obj.loss(w, X, y, lam), W[j], u)
        assert_matches_fd(G[j] @ u, fd, rtol=1e-6)


def test_the_blocked_forward_gives_each_starts_logits():
    obj = _mlp("l2", False)
    X, _ = _data()
    W = _starts(obj, 5, np.float64)
    tape = obj.model.forward_many(W, X)
    _close(tape.z, np.stack([obj.model.forward(w, X).z for w in W]), 1e-13)


def _ctx(obj, X, y, Xv, yv, victim, lam):
    c = Context.make(obj, Xv, yv, victim, lam=lam, rows=np.arange(6), seed=5)
    c.data = obj.prepare(X, y, lam)
    return c


class _Separate:
    """``GD`` without ``fit_many``: ``RMD.final`` then trains its starts one by one (the
    code before the blocked fit; any victim object of the protocol)."""

    def __init__(self, gd):
        self.gd = gd

    def __getattr__(self, name):
        if name == "fit_many":
            raise AttributeError(name)
        return getattr(self.gd, name)


@pytest.mark.parametrize("dtype", [None, "float32"])
def test_rmd_final_over_fixed_starts_is_the_mean_of_separate_trainings(dtype):
    obj = _mlp("l2", False)
    X, y = _data()
    Xv, yv = _data(n=30, seed=2)
    gd, m = GD(40, 0.3), RMD(eval_starts=4, dtype=dtype)
    values = []
    for victim in (gd, _Separate(gd)):
        c = _ctx(obj, X, y, Xv, yv, victim, -3.0)
        st = m.start(c)
        values.append(m.final(c, st, X, y, np.asarray(-3.0)))
    rtol = 1e-12 if dtype is None else 1e-5
    assert values[0] == pytest.approx(values[1], rel=rtol)
    # and it is the mean of GD.fit's validation losses from the batch's draws
    c = _ctx(obj, X, y, Xv, yv, gd, -3.0)
    if dtype is None:
        draws = [c.init_w() for _ in range(4)]
        want = np.mean([float(obj.val_loss(gd.fit(obj, X, y, -3.0, w0=w), Xv, yv))
                        for w in draws])
        assert values[0] == pytest.approx(want, rel=1e-12)


def test_a_diverged_start_raises_as_the_separate_fit_does():
    """A step far past ``2 / L``: ``fit_many`` raises the DivergenceError ``fit`` raises
    for the first start (same message: ``|w_T|``, ``eta``, ``lam``, ``T``, the bound), and
    ``RMD.final`` raises it from the blocked path."""
    obj = _mlp("l2", False)
    X, y = _data()
    X = X * 30
    W0 = _starts(obj, 3, np.float64)
    gd = GD(30, 50.0)
    with pytest.raises(DivergenceError) as separate:
        gd.fit(obj, X, y, -3.0, w0=W0[0])
    with pytest.raises(DivergenceError) as blocked:
        gd.fit_many(obj, X, y, -3.0, W0=W0)
    assert str(blocked.value).split("|w_T| = ")[1].split(" ")[1:] == \
        str(separate.value).split("|w_T| = ")[1].split(" ")[1:]
    Xv, yv = _data(n=30, seed=2)
    c = _ctx(obj, X, y, Xv, yv, gd, -3.0)
    m = RMD(eval_starts=3)
    with pytest.raises(DivergenceError, match="gradient descent diverged"):
        m.final(c, m.start(c), X, y, np.asarray(-3.0))


def test_one_start_and_eta_auto_still_train():
    """``K = 1`` is a plain fit; ``eta="auto"`` (a step per start) trains one by one."""
    obj = _mlp("l2", False)
    X, y = _data()
    W0 = _starts(obj, 2, np.float64)
    _close(GD(20, 0.3).fit_many(obj, X, y, -3.0, W0=W0[:1]),
           GD(20, 0.3).fit(obj, X, y, -3.0, w0=W0[0])[None], 1e-12)
    auto = GD(20, "auto")
    _close(auto.fit_many(obj, X, y, -3.0, W0=W0),
           np.stack([auto.fit(obj, X, y, -3.0, w0=w) for w in W0]), 1e-12)


@pytest.mark.parametrize("W0, exc", [
    (np.zeros(10), ValueError),                      # one start as (P,)
    (np.zeros((2, 10)), ValueError),                 # wrong P
    (np.zeros((0, 137)), ValueError),                # no start
    (np.zeros((2, 137, 1)), ValueError),             # 3-D
    (np.zeros((2, 137), dtype=np.int64), TypeError),
    ([[0.0] * 137] * 2, TypeError),                  # not an array
    (np.full((2, 137), np.nan), ValueError),
], ids=["1d", "wrong-P", "empty", "3d", "int", "list", "nan"])
def test_bad_starts_are_one_line_naming_W0(W0, exc):
    obj = _mlp("l2", False)
    assert obj.model.n_params == 137
    X, y = _data()
    for call in (lambda: GD(5, 0.1).fit_many(obj, X, y, -3.0, W0=W0),
                 lambda: unroll_many(obj, W0, X, y, -3.0, T=5, eta=0.1)):
        with pytest.raises(exc) as err:
            call()
        msg = str(err.value)
        assert msg.startswith("W0: expected") and "\n" not in msg, msg
