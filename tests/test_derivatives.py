"""Every derivative of the objective against central finite differences (float64, <= 1e-6)."""
import numpy as np
from hypothesis import given

from helpers import rel_err, assert_matches_fd, fd_direction, fd_vector, problems

TOL = 1e-6


@given(problems())
def test_gradient_matches_finite_differences(p):
    g = p.obj.grad(p.w, p.X, p.y, p.lam)
    fd = fd_vector(lambda w: p.obj.loss(w, p.X, p.y, p.lam), p.w)
    assert_matches_fd(g, fd, TOL)


@given(problems())
def test_hvp_matches_finite_differences_of_gradient(p):
    Hv = p.obj.hvp(p.w, p.X, p.y, p.lam, p.v)
    fd = fd_direction(lambda w: p.obj.grad(w, p.X, p.y, p.lam), p.w, p.v)
    assert_matches_fd(Hv, fd, TOL)


@given(problems())
def test_hvp_xw_matches_finite_differences_over_X(p):
    M = p.obj.hvp_xw(p.w, p.X, p.y, p.lam, p.v)
    assert M.shape == p.X.shape
    fd = fd_vector(lambda X: p.v @ p.obj.grad(p.w, X, p.y, p.lam), p.X)
    assert_matches_fd(M, fd, TOL)


@given(problems())
def test_hvp_xw_rows_selects_rows(p):
    rows = np.arange(p.X.shape[0])[::2]
    full = p.obj.hvp_xw(p.w, p.X, p.y, p.lam, p.v)
    part = p.obj.hvp_xw(p.w, p.X, p.y, p.lam, p.v, rows=rows)
    np.testing.assert_allclose(part, full[rows], rtol=1e-13, atol=1e-300)


@given(problems(penalties=("l2", "l1")))
def test_hvp_lw_matches_finite_differences_over_lam(p):
    m = p.obj.hvp_lw(p.w, p.X, p.y, p.lam, p.v)
    lam = np.asarray(p.lam, dtype=np.float64)
    assert np.shape(m) == lam.shape
    fd = fd_vector(lambda lam: p.v @ p.obj.grad(p.w, p.X, p.y, lam[()] if lam.ndim == 0
                                                 else lam), lam)
    assert_matches_fd(m, fd, TOL)


@given(problems(penalties=(None,)))
def test_hvp_lw_is_none_without_penalty(p):
    assert p.obj.hvp_lw(p.w, p.X, p.y, None, p.v) is None


@given(problems())
def test_hessian_is_symmetric(p):
    uHv = p.u @ p.obj.hvp(p.w, p.X, p.y, p.lam, p.v)
    vHu = p.v @ p.obj.hvp(p.w, p.X, p.y, p.lam, p.u)
    scale = np.linalg.norm(p.u) * np.linalg.norm(p.v) * max(
        np.linalg.norm(p.obj.hvp(p.w, p.X, p.y, p.lam, p.v)) / np.linalg.norm(p.v), 1.0)
    assert abs(uHv - vHu) <= 1e-12 * scale


@given(problems())
def test_float32_agrees_with_float64(p):
    q = p.cast(np.float32)
    for name, args in [("grad", ()), ("hvp", (p.v,)), ("hvp_xw", (p.v,))]:
        f64 = getattr(p.obj, name)(p.w, p.X, p.y, p.lam, *args)
        f32 = getattr(q.obj, name)(q.w, q.X, q.y, q.lam, *(a.astype(np.float32) for a in args))
        assert f32.dtype == np.float32, name
        # float32 carries ~7 digits; sums of a few dozen O(1) terms lose at most ~2 more.
        # The absolute floor covers results that cancel to ~0 from O(1) terms.
        err = np.linalg.norm(f32.astype(np.float64) - f64)
        assert err <= 1e-4 * np.linalg.norm(f64) + 1e-5, name


@given(problems())
def test_point_shares_one_forward_pass(p):
    """The Point's products equal the one-shot functions (same numbers, one forward; the
    one-shot ``H v`` is the fused fresh-point path, equal to rounding)."""
    pt = p.obj.at(p.w, p.X, p.y, p.lam)
    rows = np.arange(p.X.shape[0])
    Hv, Mx, Ml = pt.hvp_mixed(p.v, rows=rows)
    np.testing.assert_allclose(pt.grad(), p.obj.grad(p.w, p.X, p.y, p.lam), rtol=1e-14)
    assert rel_err(Hv, p.obj.hvp(p.w, p.X, p.y, p.lam, p.v)) < 1e-13
    np.testing.assert_allclose(Mx, p.obj.hvp_xw(p.w, p.X, p.y, p.lam, p.v), rtol=1e-14,
                               atol=1e-300)
    if p.lam is not None:
        np.testing.assert_allclose(Ml, p.obj.hvp_lw(p.w, p.X, p.y, p.lam, p.v), rtol=1e-14)


@given(problems())
def test_products_do_not_depend_on_whether_the_gradient_was_formed(p):
    """A lone R pass forms the backward deltas without the gradient (``backward(out=None)``);
    it must give what the R pass after ``grad()`` (as in Alg. 1) gives."""
    lone = p.obj.at(p.w, p.X, p.y, p.lam)
    rows = np.arange(min(2, p.X.shape[0]))
    Hv, Mx, Ml = lone.hvp_mixed(p.v, rows=rows)
    after = p.obj.at(p.w, p.X, p.y, p.lam)
    after.grad()
    for a, b in zip((Hv, Mx, Ml), after.hvp_mixed(p.v, rows=rows)):
        if b is None:
            assert a is None
        else:
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(lone.grad(), after.grad())
