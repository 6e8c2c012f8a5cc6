"""secml's poisoning protocol, shared by ``bench_attack.py`` (hvpoison's side) and
``secml_peer.py`` (secml's side, run in its own virtual environment).

The protocol (issue #14): a balanced binary task with ``n_tr = 1000``, ``n_val = 100``,
``n_test = 1000``, feature box ``[0, 1]``; the victim is L2-regularised logistic regression
with ``C = 1`` (``exp(lam) = 1 / (C n_tr)``, i.e. ``lam = log 1e-3``) trained **to
optimality**; ``n_batches = 5`` cumulative batches of ``n_poison = 40`` points, each batch
initialised as label-flipped clones of validation rows and replacing clean training rows
(4 % ... 20 %).

:func:`export` writes one split with everything both attackers need into an ``.npz``:
``Xtr, ytr, Xval, yval, Xte, yte`` (float64), ``replace`` (``n_batches * n_poison`` rows of
``Xtr``; batch ``b`` replaces ``replace[(b-1) n_poison : b n_poison]``), ``src``
(``(n_batches, n_poison)`` validation rows each batch's points start from), ``lb, ub, C``.
Both are drawn exactly as :func:`hvpoison.attack` draws them (``restarts = 1``), so every
attacker starts from the same points.
"""
from __future__ import annotations

import math

import numpy as np

TASKS = ("mnist", "fmnist")
N_TR, N_VAL, N_TEST = 1000, 100, 1000
N_POISON, N_BATCHES = 40, 5
C = 1.0
LAM = math.log(1.0 / (C * N_TR))          # exp(lam) = 1 / (C n_tr) = 1e-3


def split(task, seed, data_dir=None):
    """``hvpoison.data.Split`` of the protocol for ``task`` and ``seed``."""
    from hvpoison.data import load_task

    return load_task(task, N_TR, N_VAL, N_TEST, seed=seed, data_dir=data_dir)


def init_rows(seed, n=N_TR, m=N_VAL, n_poison=N_POISON, n_batches=N_BATCHES):
    """``(replace, src)``: the replaced training rows and each batch's validation sources,
    drawn as :func:`hvpoison.attack` draws them for ``seed`` (one restart)."""
    replace = np.random.default_rng(seed).permutation(n)[: n_poison * n_batches]
    src = np.stack([np.random.default_rng([seed, b]).choice(m, size=n_poison, replace=False)
                    for b in range(1, n_batches + 1)])
    return replace, src


def export(task, seed, path, data_dir=None):
    """Write the split of ``task``/``seed`` and the initial poisoning rows to ``path``."""
    sp = split(task, seed, data_dir)
    replace, src = init_rows(seed)
    np.savez(path, Xtr=sp.Xtr, ytr=sp.ytr, Xval=sp.Xval, yval=sp.yval, Xte=sp.Xte,
             yte=sp.yte, replace=replace, src=src, lb=0.0, ub=1.0, C=C,
             n_poison=N_POISON, n_batches=N_BATCHES, seed=seed)
    return path
