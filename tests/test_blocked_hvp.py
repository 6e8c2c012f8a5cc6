"""Blocked ``H V`` and the split / fused R-operator (issue 16, "Blocked products").

Every product is held, in float64, to ``k`` single products or to a plain reference
R-operator written out here line by line (``hvpoison/models/mlp.py``'s derivation), at a
relative ``1e-12``: the new paths only regroup the same sums into wider GEMMs.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import hvpoison as hv
from hvpoison import ops
from helpers import problems

TOL = 1e-12


def close(a, b, tol=TOL):
    """``||a - b|| <= tol ||b||`` per column (a whole vector for 1-D), with a tiny floor."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    a2, b2 = (a[:, None], b[:, None]) if a.ndim == 1 else (a, b)
    err = np.linalg.norm(a2 - b2, axis=0)
    ref = np.linalg.norm(b2, axis=0)
    assert np.all(err <= tol * ref + 1e-300), f"rel err {np.max(err / np.maximum(ref, 1e-300)):.3g}"


@st.composite
def blocked(draw, kinds=("lr", "mlp"), penalties=("l2",)):
    """A problem of ``tests/helpers.py`` (MLPs with 0-3 hidden layers of 1-5 units, a single
    unit included) plus a block ``V`` ``(P, k)``, ``k`` in 1..9, C, F or strided."""
    p = draw(problems(kinds, penalties, min_hidden=0))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    P = p.model.n_params
    V = rng.normal(size=(P, draw(st.integers(1, 9))))
    layout = draw(st.sampled_from(["C", "F", "strided"]))
    if layout == "F":
        V = np.asfortranarray(V)
    elif layout == "strided":                       # every other column of a wider block
        W = np.zeros((P, 2 * V.shape[1]))
        W[:, ::2] = V
        V = W[:, ::2]
    return p, V


def reference_rop(model, w, X, y, v):
    """The model part of ``H v`` by the plain R-operator, lines 1-3 of the model's module
    docstring written out once per direction (the engine's code before the split)."""
    layers, Vs = model.unpack(w), model.unpack(v)
    a, D = [X], []
    for W, b in layers[:-1]:
        Z = a[-1] @ W + b
        D.append(np.where(Z > 0, 1.0, model.slope))
        a.append(Z * D[-1])
    z = (a[-1] @ layers[-1][0] + layers[-1][1])[:, 0]
    _, s, curv = ops.sigmoid_ce(np, z, y, with_loss=False)
    deltas = [s[:, None]]                            # line 1
    for k in range(len(layers) - 1, 0, -1):
        deltas.insert(0, (deltas[0] @ layers[k][0].T) * D[k - 1])
    Ra, RZ = [np.zeros_like(X)], None                # line 2
    for k, ((W, _), (VW, vb)) in enumerate(zip(layers, Vs)):
        RZ = Ra[k] @ W + a[k] @ VW + vb
        if k < len(layers) - 1:
            Ra.append(D[k] * RZ)
    out = np.zeros_like(w)
    Rdelta = curv[:, None] * RZ                      # line 3
    for k in range(len(layers) - 1, -1, -1):
        RgW, Rgb = model.unpack(out)[k]
        RgW[...] = Ra[k].T @ deltas[k] + a[k].T @ Rdelta
        Rgb[...] = Rdelta.sum(axis=0)
        if k > 0:
            Rdelta = (Rdelta @ layers[k][0].T + deltas[k] @ Vs[k][0].T) * D[k - 1]
    return out


def reference_lr_rop(model, w, X, y, v):
    """LR's lines 2-3: ``A^T diag(curv) A v`` with ``A = [X 1]``."""
    _, _, curv = ops.sigmoid_ce(np, X @ w[:-1] + w[-1], y, with_loss=False)
    A = np.hstack([X, np.ones((X.shape[0], 1))])
    return A.T @ (curv * (A @ v))


def reference(p, v):
    f = reference_lr_rop if isinstance(p.model, hv.LR) else reference_rop
    return f(p.model, p.w, p.X, p.y, v)


def state(p):
    """``(point, bwd)``: the checked point of Eq. 1 and its deltas (``backward(None)``)."""
    pt = p.obj.at(p.w, p.X, p.y, p.lam)
    return pt, p.model.backward(pt.w, pt.tape, pt.residual, None)


def penalised(p, pt, V, out):
    """``out += H_penalty V`` (the Objective's part of ``H V``)."""
    if pt.e is not None:
        p.obj.penalty.add_hvp(np, pt.w, pt.e, V, out)
    return out


# -- 1. blocked H V ----------------------------------------------------------------------
@given(blocked())
def test_rop_block_equals_k_single_products_with_l2(args):
    """``H V`` from one blocked R pass (``rop_block`` + the L2 penalty) against
    ``Objective.at(...).hvp(V[:, j])``, and ``Point.hvp_block`` against both."""
    p, V = args
    pt, bwd = state(p)
    single = np.stack([pt.hvp(np.ascontiguousarray(V[:, j])) for j in range(V.shape[1])],
                      axis=1)
    out = np.full(V.shape, np.nan, order="F" if V.flags.f_contiguous else "C")
    p.model.rop_block(pt.w, pt.tape, pt.curv, V, out, bwd=bwd)
    close(penalised(p, pt, V, out), single)
    close(pt.hvp_block(V), single)


@given(blocked(penalties=(None,)))
def test_rop_block_equals_the_reference_r_operator(args):
    p, V = args
    pt, bwd = state(p)
    out = np.full(V.shape, np.nan)
    p.model.rop_block(pt.w, pt.tape, pt.curv, V, out, bwd=bwd)
    close(out, np.stack([reference(p, V[:, j]) for j in range(V.shape[1])], axis=1))


def test_mlp_rop_block_asks_for_the_deltas():
    m = hv.MLP((3, 2, 1))
    rng = np.random.default_rng(0)
    w, X = rng.normal(size=m.n_params), rng.normal(size=(4, 3))
    tape = m.forward(w, X)
    with pytest.raises(ValueError, match="bwd"):
        m.rop_block(w, tape, np.ones(4), np.ones((m.n_params, 2)), np.empty((m.n_params, 2)))


# -- 2. the split R-operator: rop = rbackward(rforward) ------------------------------------
@given(blocked(penalties=(None,)))
def test_rforward_rbackward_is_the_r_operator(args):
    p, V = args
    pt, bwd = state(p)
    v = np.ascontiguousarray(V[:, 0])
    h = 1e-6                                        # line 2 is d z(w + r v) / dr at r = 0
    fd = (p.model.forward(p.w + h * v, p.X).z - p.model.forward(p.w - h * v, p.X).z) / (2 * h)
    rt = p.model.rforward(pt.w, pt.tape, v)
    assert rt.Rz.shape == (p.X.shape[0],)
    np.testing.assert_allclose(rt.Rz, fd, rtol=1e-6, atol=1e-8)
    split = np.full(v.shape, np.nan)
    p.model.rbackward(pt.w, pt.tape, bwd, rt, pt.curv, split)
    close(split, reference(p, v))
    rop = np.full(v.shape, np.nan)
    p.model.rop(pt.w, pt.tape, bwd, v, pt.curv, rop)
    np.testing.assert_array_equal(rop, split)
    rtV = p.model.rforward(pt.w, pt.tape, V)         # the block: one column per direction
    assert rtV.Rz.shape == (p.X.shape[0], V.shape[1])
    close(rtV.Rz[:, 0], rt.Rz)
    outV = np.full(V.shape, np.nan)
    p.model.rbackward(pt.w, pt.tape, bwd, rtV, pt.curv, outV)
    close(outV[:, 0], split)


# -- 3. the fused fresh-point functions ----------------------------------------------------
@given(blocked(penalties=(None,)), st.booleans())
def test_forward_r_is_forward_and_rforward(args, block):
    p, V = args
    V = V if block else np.ascontiguousarray(V[:, 0])
    tape, rt = p.model.forward_r(p.w, p.X, V)
    ref = p.model.forward(p.w, p.X)
    close(tape.z, ref.z)
    assert tape.z.flags.c_contiguous
    for name in ("a", "D"):                          # the MLP's layer activations and masks
        for got, want in zip(getattr(tape, name, []), getattr(ref, name, [])):
            close(got, want)
    close(rt.Rz, p.model.rforward(p.w, ref, V).Rz)


@given(blocked(penalties=(None,)), st.booleans(), st.booleans())
def test_backward_r_gives_gradient_and_r_operator(args, block, with_grad):
    """``backward_r`` = ``backward(out)`` + ``rbackward`` (and ``out_g=None``: the deltas and
    line 3 only); its state serves ``mixed_x`` as the R pass's does."""
    p, V = args
    V = V if block else np.ascontiguousarray(V[:, 0])
    pt, bwd = state(p)
    tape, rt = p.model.forward_r(p.w, p.X, V)
    _, res, curv = ops.sigmoid_ce(np, tape.z, p.y, with_loss=False)
    g = np.full(p.w.shape, np.nan) if with_grad else None
    hv_ = np.full(V.shape, np.nan)
    bwd_r, rbwd = p.model.backward_r(p.w, tape, res, rt, curv, g, hv_)
    g_ref = np.empty_like(p.w)
    p.model.backward(pt.w, pt.tape, pt.residual, g_ref)
    if with_grad:
        close(g, g_ref)
    V2 = V if block else V[:, None]
    hv2 = hv_ if block else hv_[:, None]
    close(hv2, np.stack([reference(p, V2[:, j]) for j in range(V2.shape[1])], axis=1))
    if not block:                                    # line 4 from the fused state
        rows = np.arange(p.X.shape[0])[::2]
        rbwd_ref = p.model.rop(pt.w, pt.tape, bwd, V, pt.curv, np.empty_like(p.w))
        close(p.model.mixed_x(p.w, bwd_r, rbwd, V, rows),
              p.model.mixed_x(pt.w, bwd, rbwd_ref, V, rows), 1e-11)


@given(blocked(penalties=(None, "l2", "l1")), st.booleans())
def test_fused_fresh_point_products_equal_the_kept_tapes(args, block):
    """``Objective.hvp_fresh`` (``forward_r`` + ``backward_r``: ``X [W_1 V_1]`` and ``X^T
    [delta_1 R delta_1]``, two reads of ``X``) and ``obj.hvp`` (which uses it) against the
    products of a point with its own forward tape: ``H v`` alone, and ``(grad, H V)``."""
    p, V = args
    V = V if block else np.ascontiguousarray(V[:, 0])
    pt = p.obj.at(p.w, p.X, p.y, p.lam)
    data = p.obj.prepare(p.X, p.y, p.lam)
    kept = pt.hvp_block(V) if block else pt.hvp(V)
    close(p.obj.hvp_fresh(p.w, data, V), kept)
    g, Hv = p.obj.hvp_fresh(p.w, data, V, with_grad=True)
    close(g, pt.grad())
    close(Hv, kept)
    if not block:
        close(p.obj.hvp(p.w, p.X, p.y, p.lam, V), kept)


@pytest.mark.parametrize("model", [hv.LR(5), hv.MLP((5, 3, 2, 1)), hv.MLP((5, 1))])
@pytest.mark.parametrize("k", [None, 3])
def test_fused_and_blocked_products_keep_float32(model, k):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(9, 5)).astype(np.float32)
    y = (rng.random(9) < 0.5).astype(np.float32)
    w = rng.normal(size=model.n_params).astype(np.float32)
    V = rng.normal(size=(model.n_params,) if k is None else (model.n_params, k))
    V = V.astype(np.float32)
    tape, rt = model.forward_r(w, X, V)
    _, res, curv = ops.sigmoid_ce(np, tape.z, y, with_loss=False)
    g, out = np.empty_like(w), np.empty_like(V)
    model.backward_r(w, tape, res, rt, curv, g, out)
    assert tape.z.dtype == rt.Rz.dtype == np.float32
    V64 = V.astype(np.float64).reshape(model.n_params, -1)
    ref = np.stack([(reference_lr_rop if isinstance(model, hv.LR) else reference_rop)(
        model, w.astype(np.float64), X.astype(np.float64), y.astype(np.float64), V64[:, j])
        for j in range(V64.shape[1])], axis=1)
    close(out.reshape(ref.shape).astype(np.float64), ref, 1e-5)
    bwd = model.backward(w, tape, res, None)
    blk = np.empty((model.n_params, 2), dtype=np.float32)
    model.rop_block(w, tape, curv, np.stack([V64[:, 0], V64[:, 0]], 1).astype(np.float32),
                    blk, bwd=bwd)
    assert blk.dtype == np.float32
    close(blk.astype(np.float64), np.stack([ref[:, 0], ref[:, 0]], 1), 1e-5)


@pytest.mark.parametrize("chunk_rows, resident", [(1, 0), (7, 0), (10**6, 0), (1, 10**9)])
def test_lr_fused_pairs_over_row_chunks(monkeypatch, chunk_rows, resident):
    """LR's fused single-direction products run over row chunks of ``X`` on the CPU unless
    ``X`` fits ``RESIDENT_BYTES``: any chunk size (one row, a ragged last chunk, one chunk)
    and the unchunked path give the plain products, and so does the reference of the fused
    fresh-point op (``ops.lr_hvp_fresh``) built on them."""
    model, rng = hv.LR(6), np.random.default_rng(2)
    monkeypatch.setattr(ops, "CHUNK_BYTES", chunk_rows * 6 * 8)
    monkeypatch.setattr(ops, "RESIDENT_BYTES", resident)
    X, y = rng.normal(size=(45, 6)), (rng.random(45) < 0.5).astype(float)
    assert len(ops.row_chunks(X)) == (1 if resident else -(-45 // min(chunk_rows, 45)))
    w, v = rng.normal(size=7), rng.normal(size=7)
    tape, rt = model.forward_r(w, X, v)
    close(tape.z, X @ w[:-1] + w[-1])
    close(rt.Rz, X @ v[:-1] + v[-1])
    _, res, curv = ops.sigmoid_ce(np, tape.z, y, with_loss=False)
    g, Hv = np.full(7, np.nan), np.full(7, np.nan)
    model.backward_r(w, tape, res, rt, curv, g, Hv)
    close(g, np.append(X.T @ res, res.sum()))
    close(Hv, reference_lr_rop(model, w, X, y, v))
    g2, Hv2, Hv3 = np.full(7, np.nan), np.full(7, np.nan), np.full(7, np.nan)
    ops.lr_hvp_fresh(np, X, y, w, v, g2, Hv2)
    ops.lr_hvp_fresh(np, X, y, w, v, None, Hv3)
    close(g2, g)
    close(Hv2, Hv)
    close(Hv3, Hv)


@pytest.mark.parametrize("block", [False, True])
def test_transposed_first_layer_products_give_the_same_numbers(monkeypatch, block):
    """From ``XW_ROWS`` rows on, the MLP forms ``X W_1`` as ``(W_1^T X^T)^T`` (an F-order
    result, faster in OpenBLAS); every product must agree with the plain orientation."""
    from hvpoison.models import mlp

    rng = np.random.default_rng(4)
    model = hv.MLP((7, 5, 3, 1), slope=0.1)
    obj = hv.Objective(model, "l2", per_layer=True)
    X, y = rng.normal(size=(40, 7)), (rng.random(40) < 0.5) * 1.0
    w, lam = rng.normal(size=model.n_params), np.array([-1.0, -2.0, -0.5])
    V = rng.normal(size=(model.n_params, 4)) if block else rng.normal(size=model.n_params)

    def products():
        pt = obj.at(w, X, y, lam)
        data = obj.prepare(X, y, lam)
        kept = pt.hvp_block(V) if block else pt.hvp(V)
        return [pt.loss(), pt.grad(), kept, *obj.hvp_fresh(w, data, V, with_grad=True)]

    plain = products()
    monkeypatch.setattr(mlp, "XW_ROWS", 1)
    for a, b in zip(products(), plain):
        close(np.atleast_1d(a), np.atleast_1d(b))
    monkeypatch.setattr(mlp, "_xw", lambda X, W: X @ W + 1e-3)      # the test can fail
    with pytest.raises(AssertionError):
        close(products()[1], plain[1])
