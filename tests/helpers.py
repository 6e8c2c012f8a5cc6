"""Shared test helpers: random problems and central finite differences.

Problems are drawn by hypothesis as a handful of integers (sizes, seeds) from which the
arrays come out of a seeded numpy generator: hypothesis explores the shapes and settings,
the values stay well conditioned (no exact kinks of Leaky ReLU or |w|).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

import hvpoison as hv

H = 1e-5          # central-difference step: truncation ~H^2 ~ 1e-10, round-off ~eps/H ~ 1e-11


def blobs(n, d=2, seed=0, sep=1.0, spread=0.8):
    """Two Gaussian classes at ``+-sep`` in ``d`` dimensions: ``(X (n, d), y (n,))``."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(float)
    X = rng.normal(size=(n, d)) * spread + np.where(y[:, None] > 0, sep, -sep)
    return X, y


def rel_err(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


class FD(np.ndarray):
    """A finite-difference result that carries ``noise``: a bound on its round-off error
    (``100 eps max|f| / h`` per entry), below which agreement cannot be resolved."""


def fd_vector(f, x, h=H):
    """Central differences of scalar ``f`` at every coordinate of array ``x``."""
    out = np.zeros(x.shape, dtype=np.float64)
    flat = out.reshape(-1)
    fmax = 0.0
    for i in range(x.size):
        e = np.zeros_like(x)
        e.reshape(-1)[i] = h
        fp, fm = f(x + e), f(x - e)
        fmax = max(fmax, abs(float(fp)), abs(float(fm)))
        flat[i] = (fp - fm) / (2 * h)
    out = out.view(FD)
    out.noise = 100 * np.finfo(np.float64).eps * fmax / h * np.sqrt(x.size)
    return out


def assert_matches_fd(analytic, fd, rtol=1e-6):
    """``||analytic - fd|| <= rtol ||fd||``, unless the difference is under FD's own noise."""
    err = np.linalg.norm(np.asarray(analytic, dtype=np.float64) - np.asarray(fd))
    assert err <= rtol * np.linalg.norm(np.asarray(fd)) or err <= fd.noise, (
        f"|analytic - fd| = {err:.3g}, |fd| = {np.linalg.norm(np.asarray(fd)):.3g}, "
        f"fd noise = {fd.noise:.3g}")


def fd_direction(f, x, u, h=H):
    """Central difference of ``f`` (scalar or array) along ``u``, carrying its round-off
    bound ``noise = 100 eps max(|f(x +- h u)|) / h`` (for :func:`assert_matches_fd`): when
    the sigmoid saturates, ``H v`` can be 1e-4 of the gradient it is differenced from."""
    fp, fm = np.asarray(f(x + h * u)), np.asarray(f(x - h * u))
    out = np.asarray((fp - fm) / (2 * h), dtype=np.float64).view(FD)
    out.noise = 100 * np.finfo(np.float64).eps * max(np.linalg.norm(fp), np.linalg.norm(fm)) / h
    return out


@dataclass
class Problem:
    model: object
    obj: object
    w: np.ndarray
    v: np.ndarray
    u: np.ndarray
    X: np.ndarray
    y: np.ndarray
    lam: object

    def cast(self, dtype):
        lam = self.lam
        if isinstance(lam, np.ndarray):
            lam = lam.astype(dtype)
        return Problem(self.model, self.obj, self.w.astype(dtype), self.v.astype(dtype),
                       self.u.astype(dtype), self.X.astype(dtype), self.y, lam)


@st.composite
def problems(draw, kinds=("lr", "mlp"), penalties=(None, "l2", "l1"), min_hidden=1):
    """A Problem: LR or an MLP with ``min_hidden``-3 hidden layers of 1-5 units."""
    kind = draw(st.sampled_from(kinds))
    n = draw(st.integers(1, 12))
    d = draw(st.integers(1, 6))
    if kind == "lr":
        model = hv.LR(d)
    else:
        hidden = draw(st.lists(st.integers(1, 5), min_size=min_hidden, max_size=3))
        model = hv.MLP((d, *hidden, 1), slope=draw(st.sampled_from([0.0, 0.01, 0.2])))
    penalty = draw(st.sampled_from(penalties))
    per_layer = draw(st.booleans()) if penalty else False
    obj = hv.Objective(model, penalty, per_layer=per_layer)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if penalty is None:
        lam = None
    elif per_layer:
        lam = rng.uniform(-3, 1, size=obj.n_lam)
    else:
        lam = float(rng.uniform(-3, 1))
    P = model.n_params
    X = rng.normal(size=(n, d))
    prob = Problem(model, obj, rng.normal(size=P), rng.normal(size=P), rng.normal(size=P),
                   X, (rng.random(n) < 0.5).astype(np.float64), lam)
    assume(well_away_from_kinks(prob))
    return prob


def well_away_from_kinks(p, margin=1e-3, z_max=15.0):
    """No hidden pre-activation and no penalised weight within ``margin`` of a kink, and no
    logit beyond ``z_max``: where the sigmoid saturates, ``1 - p`` keeps only ``eps / (1 -
    p)`` of its digits (1e-4 at ``|z| = 27``), in the gradient the differences are taken of
    as much as in ``H v``, so neither is a reference for the other there."""
    if p.obj.penalty is not None and p.obj.penalty.kind == "l1":
        if any(np.abs(p.w[g]).min() < margin for g in p.model.weight_slices):
            return False
    if isinstance(p.model, hv.MLP):
        a = p.X
        for k, (W, b) in enumerate(p.model.unpack(p.w)[:-1]):
            Z = a @ W + b
            if np.abs(Z).min() < margin:
                return False
            a = np.where(Z > 0, Z, p.model.slope * Z)
    return bool(np.abs(p.model.forward(p.w, p.X).z).max() < z_max)
