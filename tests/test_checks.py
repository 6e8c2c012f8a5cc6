"""Every bad input raises the documented error naming the argument, expected and given."""
import numpy as np
import pytest

import hvpoison as hv

m = hv.MLP((3, 2, 1))
obj = hv.Objective(m, "l2", per_layer=True)
w = m.init(0)
X = np.ones((4, 3))
y = np.array([0, 1, 0, 1.0])
v = np.ones(m.n_params)
lam = np.array([0.0, 0.0])


def call(**kw):
    a = dict(w=w, X=X, y=y, lam=lam, v=v)
    a.update(kw)
    return obj.hvp(a["w"], a["X"], a["y"], a["lam"], a["v"])


BAD = [
    ("w", dict(w=np.ones(3)), ValueError, r"w: expected shape \(11,\)"),
    ("w", dict(w=np.ones((11, 1))), ValueError, r"w: expected shape \(11,\)"),
    ("w", dict(w=np.ones(11, dtype=int)), TypeError, "w: expected dtype float32 or float64"),
    ("w", dict(w=[0.0] * 11), TypeError, "w: expected a 1-D float array"),
    ("w", dict(w=np.full(11, np.nan)), ValueError, "w: expected finite values"),
    ("X", dict(X=np.ones((4, 2))), ValueError, r"X: expected shape \(n, 3\)"),
    ("X", dict(X=np.ones((0, 3))), ValueError, r"X: expected shape \(n, 3\) with n >= 1"),
    ("X", dict(X=np.ones(3)), ValueError, r"X: expected shape \(n, 3\)"),
    ("X", dict(X=np.ones((4, 3), dtype=np.float32)), TypeError, "X: expected dtype float64"),
    ("X", dict(X=np.ones((4, 3), dtype=int)), TypeError, "X: expected dtype float64"),
    ("X", dict(X=np.where(np.eye(4, 3) > 0, np.inf, 1.0)), ValueError, "X: expected finite"),
    ("y", dict(y=np.array([0, 1, 2, 1])), ValueError, r"y: expected labels in \{0, 1\}"),
    ("y", dict(y=np.array([0, 1, -1, 1.0])), ValueError, r"y: expected labels in \{0, 1\}"),
    ("y", dict(y=np.array([0, 1.0])), ValueError, r"y: expected shape \(4,\)"),
    ("y", dict(y=np.array(["a", "b", "c", "d"])), TypeError, "y: expected numeric"),
    ("lam", dict(lam=np.zeros(3)), ValueError, r"lam: expected a scalar or shape \(2,\)"),
    ("lam", dict(lam=np.zeros((2, 1))), ValueError, r"lam: expected a scalar or shape \(2,\)"),
    ("lam", dict(lam=float("inf")), ValueError, "lam: expected a finite value"),
    ("lam", dict(lam=np.array([0.0, np.nan])), ValueError, "lam: expected finite values"),
    ("lam", dict(lam="big"), TypeError, "lam: expected None, a float or a 1-D array"),
    ("lam", dict(lam=True), TypeError, "lam: expected None, a float or a 1-D array"),
    ("v", dict(v=np.ones(5)), ValueError, r"v: expected shape \(11,\)"),
    ("v", dict(v=np.full(11, np.nan)), ValueError, "v: expected finite values"),
    ("v", dict(v=None), TypeError, "v: expected a 1-D float array"),
]


@pytest.mark.parametrize("arg,kw,exc,msg", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_names_argument_expected_and_given(arg, kw, exc, msg):
    with pytest.raises(exc, match=msg) as info:
        call(**kw)
    assert "got" in str(info.value)


@pytest.mark.parametrize("ctor,exc,msg", [
    (lambda: hv.LR(0), ValueError, "n_features: expected a positive integer, got 0"),
    (lambda: hv.LR(-3), ValueError, "n_features: expected a positive integer"),
    (lambda: hv.LR(2.5), TypeError, "n_features: expected a positive integer"),
    (lambda: hv.MLP((3, 0, 1)), ValueError, r"sizes\[1\]: expected a positive integer"),
    (lambda: hv.MLP((3, 2, 2)), ValueError, "sizes: expected a last entry of 1"),
    (lambda: hv.MLP((3,)), TypeError, "sizes: expected a sequence"),
    (lambda: hv.MLP(5), TypeError, "sizes: expected a sequence"),
    (lambda: hv.MLP((3, 1), slope=-0.1), ValueError, r"slope: expected a number in \[0, 1\]"),
    (lambda: hv.Objective("lr"), TypeError, "model: expected an hvpoison model"),
    (lambda: hv.Objective(hv.LR(2), "l3"), ValueError, "penalty: expected one of"),
    (lambda: hv.Objective(hv.LR(2), per_layer=1), TypeError, "per_layer: expected True or False"),
    (lambda: hv.LR(2).init(0, dtype=np.int32), TypeError, "dtype: expected float32 or float64"),
    (lambda: hv.LR(2).init(0, device="tpu"), ValueError, "device: expected one of"),
])
def test_bad_construction(ctor, exc, msg):
    with pytest.raises(exc, match=msg):
        ctor()


def test_lam_given_to_an_objective_without_penalty():
    o = hv.Objective(hv.LR(3))
    with pytest.raises(ValueError, match="lam: expected None"):
        o.loss(np.zeros(4), X, y, 0.5)


def test_scalar_only_objective_rejects_per_layer_lam():
    o = hv.Objective(m, "l2")
    with pytest.raises(ValueError, match=r"lam: expected a scalar or shape \(1,\)"):
        o.loss(w, X, y, np.zeros(2))


@pytest.mark.parametrize("rows,exc,msg", [
    (np.array([0, 4]), ValueError, r"rows: expected indices in \[0, 4\)"),
    (np.array([1, 1]), ValueError, "rows: expected unique row indices"),
    (np.array([0.5]), TypeError, "rows: expected a 1-D array of integer row indices"),
    (np.array([[0]]), TypeError, "rows: expected a 1-D array of integer row indices"),
])
def test_bad_rows(rows, exc, msg):
    with pytest.raises(exc, match=msg):
        obj.hvp_xw(w, X, y, lam, v, rows=rows)


def test_implicit_checks_poison_idx_and_validation_set():
    o = hv.Objective(hv.LR(3), "l2")
    with pytest.raises(ValueError, match=r"poison_idx: expected indices in \[0, 4\)"):
        hv.implicit_hypergrad(o, X, y, np.array([7]), X, y, 0.0)
    with pytest.raises(ValueError, match=r"Xval: expected shape \(n, 3\)"):   # names Xval
        hv.implicit_hypergrad(o, X, y, None, np.ones((2, 2)), y[:2], 0.0)


# -- issue 27: a finite exp(lam), short messages for huge inputs ---------------------------
@pytest.mark.parametrize("lam", [1e6, 710.0, np.array([1e6])])
def test_lam_whose_exp_overflows_is_an_error_not_nan(lam):
    obj = hv.Objective(hv.LR(3), "l2")
    X, y = np.ones((4, 3)), np.array([0.0, 1, 0, 1])
    for f in (lambda: obj.loss(np.zeros(4), X, y, lam), lambda: obj.grad(np.zeros(4), X, y, lam),
              lambda: obj.hvp(np.zeros(4), X, y, lam, np.ones(4))):
        with pytest.raises(ValueError, match=r"lam: expected values with a finite exp\(lam\) "
                           r"in float64 \(lam < 709.8\)"):
            f()
    X32 = X.astype(np.float32)
    with pytest.raises(ValueError, match=r"finite exp\(lam\) in float32 \(lam < 88.7\)"):
        obj.loss(np.zeros(4, np.float32), X32, y, 100.0)
    with pytest.raises(ValueError, match="lam_bounds: expected values with a finite exp"):
        hv.attack(obj, X, y, X, y, n_poison=1, n_batches=1, lam=-1.0, learn_lam=True,
                  lam_bounds=(-10.0, 1e6))


def test_huge_inputs_give_short_error_messages():
    obj = hv.Objective(hv.LR(784), "l2")
    X = np.random.default_rng(0).random((2000, 784)).tolist()        # 16 MB as text
    for f in (lambda: obj.loss(np.zeros(785), X, np.zeros(2000), -1.0),
              lambda: hv.train(obj, np.ones((3, 784)), np.zeros(3), [1.0] * 10**6),
              lambda: hv.evaluate(obj, np.ones((3, 784)), np.zeros(3), X, np.zeros(2000))):
        with pytest.raises((TypeError, ValueError)) as e:
            f()
        assert len(str(e.value)) < 400 and "\n" not in str(e.value), str(e.value)[:500]
