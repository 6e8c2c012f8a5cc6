"""secml 0.15.6 peer for the attack benchmark (issue #14): runs secml's own poisoning attack
on the inputs written by :func:`attack_protocol.export` and saves its poisoning points.

Run it with the secml virtual environment's python (it imports numpy and secml only, never
hvpoison)::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \\
        /root/secml-venv/bin/python bench/secml_peer.py IN.npz OUT.npz

Virtual environment (Python 3.11.7; secml 0.15.6 declares an older ``python_requires`` and
needs the old, binary-only numerical stack)::

    python3 -m venv /root/secml-venv
    /root/secml-venv/bin/pip install --upgrade pip
    /root/secml-venv/bin/pip install --only-binary=:all: numpy==1.23.5 scipy==1.9.3 \\
        scikit-learn==1.1.3 matplotlib==3.6.3
    /root/secml-venv/bin/pip install --ignore-requires-python secml==0.15.6

(the last one also pulls ``requests`` and its dependencies from PyPI; nothing else was
needed.)

Protocol (see ``attack_protocol.py`` for the input keys). Five cumulative batches of
``n_poison = 40`` points (4 % ... 20 % of ``n_tr = 1000``). For batch ``b = 1..5``:

* secml's training set is ``Xtr, ytr`` with rows ``replace[:(b-1) 40]`` replaced by the
  points found in batches ``1..b-1`` (with their labels) and rows
  ``replace[(b-1) 40 : b 40]`` removed: secml *appends* its poisoning points to the training
  set, so removing those rows and appending the 40 new points equals replacing them;
* the 40 initial points are ``Xval[src[b-1]]`` with flipped labels ``1 - yval[src[b-1]]``,
  passed to ``CAttackPoisoning.run`` as ``ds_init`` (this overwrites secml's own random
  initialisation completely, so secml starts from the same points as hvpoison);
* the victim is ``CClassifierLogistic(C=1)`` (sklearn liblinear, L2, intercept also
  penalised, tol 1e-4, max_iter 100: secml's defaults) fitted on that training set; the
  attacker's validation set is ``(Xval, yval)``; the box is ``[lb, ub] = [0, 1]``;
* the attack is ``CAttackPoisoningLogisticRegression`` with ``solver_type='pgd-ls'``,
  ``random_seed = seed`` and the class's defaults otherwise (``distance='l1'``, ``dmax=0``,
  ``init_type='random'``; the distance constraint is created with radius 1e12 so it never
  binds, but with ``'l1'`` pgd-ls moves along the single largest-|gradient| feature per
  step, see ``COptimizerPGDLS._xk``).

Solver settings ("pgd-ls, 20 it/point"). ``CAttackPoisoning.run(x, y, ds_init, max_iter)``
makes ``max_iter`` sweeps over the points; in each sweep it optimises one point at a time
(last to first, the others fixed) with a fresh pgd-ls solver (``_run``). The solver's own
``max_iter`` is the per-point budget: ``COptimizerPGDLS.minimize`` records the start point
as iteration 0 and then takes at most ``max_iter - 1`` projected-gradient steps, each with a
bisection line search (``CLineSearchBisect``, up to 50 evaluations, every one a retrain),
stopping early when the objective changes by less than ``eps``. So this script uses one
sweep (``run(..., max_iter=1)``) and ``solver_params = {'eta': 0.25, 'eta_min': 2.0,
'eta_max': None, 'max_iter': 20, 'eps': 1e-6}`` (secml's tutorial values with
``max_iter = 20``): at most 20 solver iterations (19 gradient steps) per point. The number
of gradient steps each point really took is saved as ``steps``.

Output ``OUT.npz``: ``Xp (5, 40, 784)`` final points of each batch, ``yp (5, 40)`` their
labels, ``seconds (5,)`` wall-clock time of each batch's attack (building the attack and
``run``; the clean victim fit before it is not counted), ``objective (5,)`` secml's attacker
objective at the end of each batch (mean logistic loss on ``(Xval, yval)`` of the poisoned
classifier, ``f_opt`` of the last point optimised), ``test_error_secml (5,)`` test error on
``(Xte, yte)`` of a fresh ``CClassifierLogistic(C=1)`` trained on each batch's poisoned set,
``steps (5, 40)`` gradient steps per point, ``secml_version``, ``solver_params`` (JSON) and
``seed``.
"""
from __future__ import annotations

import json
import os
import sys
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

import secml  # noqa: E402
from secml.adv.attacks.poisoning import CAttackPoisoningLogisticRegression  # noqa: E402
from secml.array import CArray  # noqa: E402
from secml.data import CDataset  # noqa: E402
from secml.ml.classifiers import CClassifierLogistic  # noqa: E402

SOLVER_PARAMS = {"eta": 0.25, "eta_min": 2.0, "eta_max": None, "max_iter": 20, "eps": 1e-6}
SWEEPS = 1          # CAttackPoisoning.run(max_iter=...): passes over all the points


def _ds(X, y):
    return CDataset(CArray(np.asarray(X, dtype=np.float64)), CArray(np.asarray(y).astype(int)))


def _fit(X, y, C):
    clf = CClassifierLogistic(C=C)
    clf.fit(CArray(X), CArray(y.astype(int)))
    return clf


def _error(clf, X, y):
    pred = clf.predict(CArray(X)).tondarray().ravel()
    return float(np.mean(pred != y))


def main(inp, out):
    d = np.load(inp)
    Xtr, ytr = d["Xtr"].astype(np.float64), d["ytr"].astype(int)
    Xval, yval = d["Xval"].astype(np.float64), d["yval"].astype(int)
    Xte, yte = d["Xte"].astype(np.float64), d["yte"].astype(int)
    replace, src = d["replace"], d["src"]
    lb, ub, C = float(d["lb"]), float(d["ub"]), float(d["C"])
    k, nb, seed = int(d["n_poison"]), int(d["n_batches"]), int(d["seed"])
    n, dim = Xtr.shape
    val = _ds(Xval, yval)

    Xp = np.zeros((nb, k, dim))
    yp = np.zeros((nb, k), dtype=int)
    seconds = np.full(nb, np.nan)
    objective = np.full(nb, np.nan)
    test_err = np.full(nb, np.nan)
    steps = np.zeros((nb, k), dtype=int)

    print(f"{inp}: seed {seed}, clean test error "
          f"{_error(_fit(Xtr, ytr, C), Xte, yte):.4f}", flush=True)
    Xcur, ycur = Xtr.copy(), ytr.copy()          # rows of earlier batches already replaced
    for b in range(1, nb + 1):
        rows = replace[(b - 1) * k: b * k]
        keep = np.setdiff1d(np.arange(n), rows)
        Xb, yb = Xcur[keep], ycur[keep]
        tr = _ds(Xb, yb)
        clf = _fit(Xb, yb, C)                    # victim on the clean part of batch b
        x0, y0 = Xval[src[b - 1]], 1 - yval[src[b - 1]]

        t0 = time.perf_counter()
        atk = CAttackPoisoningLogisticRegression(
            classifier=clf, training_data=tr, val=val, lb=lb, ub=ub,
            solver_type="pgd-ls", solver_params=dict(SOLVER_PARAMS), random_seed=seed)
        atk.n_points = k
        run_one = atk._run
        nsteps = {}

        def _run(xc, yc, idx=0, _run_one=run_one, _nsteps=nsteps, _atk=atk):
            x = _run_one(xc, yc, idx=idx)
            _nsteps[idx] = _atk._solver.f_seq.size - 1
            return x
        atk._run = _run
        _, _, pois, f_opt = atk.run(val.X, val.Y, ds_init=_ds(x0, y0), max_iter=SWEEPS)
        seconds[b - 1] = time.perf_counter() - t0

        Xp[b - 1] = pois.X.tondarray()
        yp[b - 1] = pois.Y.tondarray().ravel().astype(int)
        objective[b - 1] = float(f_opt)
        steps[b - 1] = [nsteps.get(i, 0) for i in range(k)]
        assert np.array_equal(yp[b - 1], y0)

        pclf = _fit(np.vstack([Xb, Xp[b - 1]]), np.concatenate([yb, yp[b - 1]]), C)
        test_err[b - 1] = _error(pclf, Xte, yte)
        Xcur[rows], ycur[rows] = Xp[b - 1], yp[b - 1]
        print(f"batch {b}/{nb} ({100 * b * k / n:.0f} %): {seconds[b - 1]:.1f} s, "
              f"objective {objective[b - 1]:.4f}, test error {test_err[b - 1]:.4f}, "
              f"steps/point mean {steps[b - 1].mean():.1f} max {steps[b - 1].max()}, "
              f"|Xp-x0|_1 mean {np.abs(Xp[b - 1] - x0).sum(1).mean():.2f}", flush=True)

    np.savez(out, Xp=Xp, yp=yp, seconds=seconds, objective=objective,
             test_error_secml=test_err, steps=steps, secml_version=str(secml.__version__),
             solver_params=json.dumps(SOLVER_PARAMS), seed=seed)
    print(f"total {np.nansum(seconds):.1f} s -> {out}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python bench/secml_peer.py IN.npz OUT.npz")
    main(sys.argv[1], sys.argv[2])
