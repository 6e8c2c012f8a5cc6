"""Model bookkeeping: layout, views, initialisation, predictions, stability."""
import numpy as np
import pytest

import hvpoison as hv


def test_lr_layout_and_zero_init():
    m = hv.LR(5)
    assert m.n_params == 6 and m.n_layers == 1
    w = m.init(seed=0)
    assert w.dtype == np.float64 and not w.any()
    (W, b), = m.unpack(w)
    assert W.shape == (5, 1) and b.shape == (1,)
    W[2, 0] = 7.0
    assert w[2] == 7.0, "unpack must return views"


@pytest.mark.parametrize("sizes", [(784, 32, 16, 1), (5, 3, 1), (4, 6, 5, 3, 1)])
def test_mlp_layout_xavier_and_views(sizes):
    m = hv.MLP(sizes)
    layers = m.unpack(m.init(seed=1))
    assert [W.shape for W, _ in layers] == list(zip(sizes[:-1], sizes[1:]))
    assert m.n_params == sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    for W, b in layers:
        bound = np.sqrt(6.0 / sum(W.shape))
        assert np.abs(W).max() <= bound and np.abs(W).max() > 0.5 * bound
        assert not b.any()
    np.testing.assert_array_equal(m.init(seed=1), m.init(seed=1))
    assert not np.array_equal(m.init(seed=1), m.init(seed=2))


def test_default_mlp_is_the_documented_one():
    m = hv.MLP()
    assert m.sizes == (784, 32, 16, 1) and m.slope == 0.01


def test_float32_init():
    assert hv.MLP((3, 2, 1)).init(0, dtype=np.float32).dtype == np.float32
    assert hv.LR(3).init(0, dtype="float32").dtype == np.float32


def test_weight_slices_exclude_biases():
    m = hv.MLP((3, 2, 1))
    w = np.arange(m.n_params, dtype=float)
    pieces = np.concatenate([w[s] for s in m.weight_slices])
    expected = np.concatenate([W.ravel() for W, _ in m.unpack(w)])
    np.testing.assert_array_equal(pieces, expected)


def test_loss_and_probabilities_are_stable_for_huge_logits():
    m = hv.LR(1)
    obj = hv.Objective(m)
    X = np.array([[1.0], [1.0]])
    w = np.array([800.0, 0.0])                     # z = 800: exp(800) overflows
    loss = obj.loss(w, X, np.array([1.0, 0.0]))
    assert np.isfinite(loss) and loss == pytest.approx(400.0)
    np.testing.assert_allclose(m.predict_proba(-w, X), [0.0, 0.0], atol=1e-300)
    np.testing.assert_array_equal(m.predict(w, X), [1, 1])
    assert np.all(np.isfinite(obj.grad(w, X, np.array([1.0, 0.0]))))


def test_val_loss_is_mean_cross_entropy_without_penalty():
    rng = np.random.default_rng(0)
    m = hv.MLP((3, 4, 1))
    w, X = m.init(0), rng.normal(size=(6, 3))
    y = np.array([0, 1, 1, 0, 1, 0.0])
    p = m.predict_proba(w, X)
    expected = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    obj = hv.Objective(m, "l2")
    assert obj.val_loss(w, X, y) == pytest.approx(expected, rel=1e-12)
    assert obj.loss(w, X, y, 0.0) > obj.val_loss(w, X, y)


def test_penalty_values_and_bias_exemption():
    m = hv.MLP((2, 2, 1))
    w = np.arange(1.0, m.n_params + 1)
    X, y = np.zeros((1, 2)), np.array([1.0])
    base = hv.Objective(m).loss(w, X, y)
    weights = np.concatenate([w[s] for s in m.weight_slices])
    l2 = hv.Objective(m, "l2").loss(w, X, y, np.log(3.0)) - base
    l1 = hv.Objective(m, "l1").loss(w, X, y, np.log(3.0)) - base
    assert l2 == pytest.approx(3.0 * 0.5 * weights @ weights)
    assert l1 == pytest.approx(3.0 * np.abs(weights).sum())
    lam = np.array([0.0, np.log(2.0)])
    per = hv.Objective(m, "l2", per_layer=True).loss(w, X, y, lam) - base
    (W1, _), (W2, _) = m.unpack(w)
    assert per == pytest.approx(0.5 * (W1 ** 2).sum() + 2.0 * 0.5 * (W2 ** 2).sum())
    g = hv.Objective(m, "l2").grad(w, X, y, 5.0) - hv.Objective(m).grad(w, X, y)
    for _, b in m.unpack(g):
        assert not b.any(), "biases must not be penalised"


def test_scalar_lam_on_per_layer_objective_is_shared():
    m = hv.MLP((2, 3, 1))
    obj = hv.Objective(m, "l2", per_layer=True)
    rng = np.random.default_rng(0)
    w, v, X = rng.normal(size=m.n_params), rng.normal(size=m.n_params), rng.normal(size=(4, 2))
    y = np.array([0, 1, 0, 1.0])
    d_scalar = obj.hvp_lw(w, X, y, 0.5, v)
    d_vec = obj.hvp_lw(w, X, y, np.array([0.5, 0.5]), v)
    assert np.shape(d_scalar) == () and d_vec.shape == (2,)
    assert d_scalar == pytest.approx(d_vec.sum())
