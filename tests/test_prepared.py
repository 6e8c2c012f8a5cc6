"""Issue 16, items 1-2: a linearisation point is a value (it stays the point at its own
``w_t``), data are checked once (``Objective.prepare``, no forward pass) and accepted by every
entry point, and no module reaches into another's underscore names."""
import ast
from pathlib import Path

import numpy as np
import pytest

import hvpoison as hv
from helpers import blobs

ROOT = Path(__file__).resolve().parents[1]


def _problem(kind="mlp", n=30, d=4, seed=0):
    X, y = blobs(n, d, seed=seed)
    model = hv.LR(d) if kind == "lr" else hv.MLP((d, 6, 3, 1), slope=0.1)
    obj = hv.Objective(model, "l2", per_layer=kind == "mlp")
    lam = np.array([-2.0, -1.5, -3.0]) if kind == "mlp" else -2.0
    return obj, X, y, lam, model.init(1)


@pytest.mark.parametrize("kind", ["lr", "mlp"])
def test_every_kept_point_is_the_point_at_its_own_step(kind):
    """``unroll(keep=)`` hands out one point per step; after the loop has moved ``w`` on,
    each must still give the gradient, ``H v`` and mixed products of a fresh point at its
    ``w_t`` (the trajectory recomputed independently)."""
    obj, X, y, lam, w0 = _problem(kind)
    T, eta = 12, 0.5
    kept = {}
    hv.unroll(obj, w0, X, y, lam, T, eta, keep=kept.__setitem__)
    assert sorted(kept) == list(range(T))
    v = np.random.default_rng(3).normal(size=w0.shape)
    w = w0.copy()
    for t in range(T):
        fresh = obj.at(w, X, y, lam)
        np.testing.assert_array_equal(kept[t].w, w)
        np.testing.assert_allclose(kept[t].grad(), fresh.grad(), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(kept[t].hvp(v), fresh.hvp(v), rtol=1e-13, atol=1e-15)
        for a, b in zip(kept[t].hvp_mixed(v, rows=np.arange(3)),
                        fresh.hvp_mixed(v, rows=np.arange(3))):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
        w = w - eta * fresh.grad()
    assert not np.allclose(kept[0].hvp(v), kept[T - 1].hvp(v))     # the steps differ


@pytest.mark.parametrize("penalty", [None, "l2", "l1"])
@pytest.mark.parametrize("kind, n, d", [("lr", 30, 4), ("lr", 300, 256), ("mlp", 30, 4)])
def test_a_point_built_with_its_gradient_is_the_same_point(kind, n, d, penalty):
    """``linearize(w, data, grad_out=g)`` (a training step: the forward pass and the
    gradient together; LR's fused op, its twin at 300 x 256) writes ``grad_w L`` into ``g``
    and gives the point of a plain ``linearize``: the same loss, gradient and products."""
    X, y = blobs(n, d, seed=4)
    model = hv.LR(d) if kind == "lr" else hv.MLP((d, 6, 3, 1), slope=0.1)
    obj = hv.Objective(model, penalty)
    data = obj.prepare(X, y, None if penalty is None else -1.5)
    rng = np.random.default_rng(2)
    w, v = 0.1 * rng.normal(size=model.n_params), rng.normal(size=model.n_params)
    g = np.full_like(w, np.nan)
    fused, plain = obj.linearize(w, data, grad_out=g), obj.linearize(w, data)
    tol = dict(rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g, plain.grad(), **tol)
    np.testing.assert_allclose(fused.grad(), plain.grad(), **tol)
    np.testing.assert_allclose(float(fused.loss()), float(plain.loss()), rtol=1e-13)
    for a, b in zip(fused.hvp_mixed(v, rows=np.arange(3)), plain.hvp_mixed(v, rows=np.arange(3))):
        if a is not None:
            np.testing.assert_allclose(a, b, **tol)
    with pytest.raises(ValueError, match="grad_out"):
        obj.linearize(w, data, grad_out=np.empty(3))
    with pytest.raises(ValueError, match="grad_out"):
        obj.linearize(w, data, grad_out=np.empty(w.shape, np.float32))


def test_a_point_keeps_its_w_when_the_callers_array_changes():
    obj, X, y, lam, w = _problem("mlp")
    v = np.ones_like(w)
    pt = obj.at(w, X, y, lam)
    before = pt.hvp(v).copy()
    w += 0.3                                        # the caller's array, in place
    np.testing.assert_array_equal(pt.hvp(v), before)
    g = pt.grad()
    g[:] = 0.0                                      # a returned array is the caller's
    assert np.abs(pt.grad()).sum() > 0


def test_prepare_checks_once_and_runs_no_forward_pass(monkeypatch):
    obj, X, y, lam, w0 = _problem("lr")
    calls = []
    forward, forward_grad = obj.model.forward, obj.model.forward_grad
    monkeypatch.setattr(obj.model, "forward", lambda w, X_: calls.append(1) or forward(w, X_))
    monkeypatch.setattr(obj.model, "forward_grad",        # a training step's forward pass
                        lambda w, *a: calls.append(1) or forward_grad(w, *a))
    data = obj.prepare(X, y, lam)
    assert calls == [] and data.e.shape == (1,) and data.lam_shape == ()
    np.testing.assert_allclose(data.e, [np.exp(-2.0)])
    T = 7
    hv.rmd(obj, w0, X, y, np.arange(3), X[:10], y[:10], lam, T, 0.5)
    assert len(calls) == T + 1        # T steps and the outer loss: no forward just to check


def test_every_entry_point_takes_prepared_data():
    obj, X, y, lam, w0 = _problem("lr")
    data, val = obj.prepare(X, y, lam), obj.prepare(X[:10], y[:10])
    rows, T, eta = np.arange(3), 20, 0.5
    a = hv.rmd(obj, w0, X, y, rows, X[:10], y[:10], lam, T, eta)
    b = hv.rmd(obj, w0, data, None, rows, val, None, None, T, eta)
    np.testing.assert_array_equal(a.dXp, b.dXp)
    assert a.dlam == b.dlam and a.value == b.value
    f = hv.fmd(obj, w0, data, None, None, val, None, None, T, eta)
    np.testing.assert_allclose(f.dlam, a.dlam, rtol=1e-10)
    np.testing.assert_array_equal(hv.unroll(obj, w0, data, T=T, eta=eta),
                                  hv.unroll(obj, w0, X, y, lam, T, eta))
    np.testing.assert_array_equal(hv.train(obj, data, T=T, eta=eta),
                                  hv.train(obj, X, y, lam, T=T, eta=eta))
    np.testing.assert_array_equal(hv.GD(T, eta).fit(obj, data), hv.GD(T, eta).fit(obj, X, y, lam))
    np.testing.assert_allclose(hv.Exact().fit(obj, data), hv.Exact().fit(obj, X, y, lam),
                               rtol=1e-12, atol=1e-14)
    i = hv.implicit_hypergrad(obj, data, None, rows, val, None)
    j = hv.implicit_hypergrad(obj, X, y, rows, X[:10], y[:10], lam)
    np.testing.assert_allclose(i.dXp, j.dXp, rtol=1e-10)
    assert obj.val_loss(w0, val) == obj.val_loss(w0, X[:10], y[:10])


@pytest.mark.parametrize("call, match", [
    (lambda o, d, X, y: hv.rmd(o, np.zeros(5), d, y, None, d, None, None, 3, 0.1),
     "ytr: expected None when Xtr is Prepared data"),
    (lambda o, d, X, y: hv.unroll(o, np.zeros(5), d, None, -1.0, 3, 0.1),
     "lam: expected None when X is Prepared data"),
    (lambda o, d, X, y: hv.Objective(hv.LR(3), "l2").at(np.zeros(4), d),
     "X: expected data prepared for this objective"),
    (lambda o, d, X, y: o.linearize(np.zeros(5, np.float32), d),
     r"w: expected shape \(5,\) and dtype float64"),
    (lambda o, d, X, y: o.prepare(X.astype(int), y), "X: expected a float32 or float64"),
])
def test_prepared_data_errors_name_the_argument(call, match):
    X, y = blobs(10, 4)
    obj = hv.Objective(hv.LR(4), "l2")
    with pytest.raises((ValueError, TypeError), match=match):
        call(obj, obj.prepare(X, y, -1.0), X, y)


def test_no_module_uses_another_modules_underscore_names():
    """Layers talk through public names: no ``x._name`` on anything but ``self``/``cls``
    (the standard library's ``os._exit`` aside), no ``from m import _name``."""
    found = []
    for path in sorted((ROOT / "hvpoison").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                    and not node.attr.startswith("__"):
                base = node.value.id if isinstance(node.value, ast.Name) else None
                if base not in ("self", "cls", "os", "sys"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {base}.{node.attr}")
            if isinstance(node, ast.ImportFrom):
                found += [f"{path.relative_to(ROOT)}:{node.lineno} import {a.name}"
                          for a in node.names if a.name.startswith("_")
                          and not a.name.startswith("__") and a.name not in ("_checks",
                                                                            "_checks")]
    assert found == []


def test_attack_takes_prepared_data():
    obj, X, y, lam, _ = _problem("lr", n=40)
    kw = dict(n_poison=4, n_batches=1, iters=3, T=20, eta=0.5, learn_lam=True)
    a = hv.attack(obj, X, y, X[:10], y[:10], lam=lam, **kw)
    b = hv.attack(obj, obj.prepare(X, y, lam), None, obj.prepare(X[:10], y[:10]), None, **kw)
    np.testing.assert_array_equal(a[-1].X, b[-1].X)
    assert a[-1].lam == b[-1].lam
