"""The derived step sizes per task (the README's table of ``L``, ``c / L`` and the stable
``lam`` range): the engine's curvature bounds (:mod:`hvpoison.stepsize`) applied to the
protocol's tasks. It lives here, where data meets the engine: the engine knows no task.
"""
from __future__ import annotations

import math

from .. import _checks
from ..data import load_task
from ..models import LR, MLP
from ..objective import Objective
from ..stepsize import C, check_lam_bounds, curvature_bound, penalty_term
from .protocol import HIDDEN, TASK_ETA, TASKS


def task_table(tasks=None, kind="lr", penalty="l2", lam_bounds=(-10.0, 4.0), c=C, n_tr=1000,
               seed=0, hidden=None, data_dir=None, download=False) -> list:
    """The derived step sizes per task (the README's table): one dict per task with
    ``task``, ``d``, ``L_data`` (the data term of
    :func:`~hvpoison.stepsize.curvature_bound`), ``L``, ``auto_eta`` (``c / L``), ``eta``
    (the protocol's fixed ``ETA``), ``eta_L`` (``ETA * L``: above 2, the fixed step is past
    the stability limit at the top of ``lam_bounds``) and ``lam_max`` (the ``lam`` up to
    which the same bound keeps ``ETA`` stable, ``log(2 / ETA - L_data)``; None where ``L``
    has no ``e^lam`` term (:func:`~hvpoison.stepsize.penalty_term`) or ``L_data`` alone
    exceeds ``2 / ETA``).

    Data: ``load_task(task, n_tr, seed=seed)`` (training split ``(n_tr, d)``) of each task
    in ``tasks`` (default the protocol's ``TASKS``); ``kind`` ``"lr"`` or ``"mlp"`` (sizes
    ``(d, *hidden, 1)``, default hidden the protocol's ``HIDDEN``).
    """
    tasks = TASKS if tasks is None else tuple(tasks)
    if kind not in ("lr", "mlp"):
        _checks.fail("kind", "'lr' or 'mlp'", repr(kind))
    lo, hi = check_lam_bounds(lam_bounds)
    rows = []
    for task in tasks:
        s = load_task(task, n_tr=n_tr, n_test=100, seed=seed, data_dir=data_dir,
                      download=download)
        d = s.Xtr.shape[1]
        model = LR(d) if kind == "lr" else MLP((d, *(HIDDEN if hidden is None else hidden), 1))
        obj = Objective(model, penalty)
        L = curvature_bound(obj, s.Xtr, s.ytr, (lo, hi), seed=seed)
        L_data = curvature_bound(Objective(model, None), s.Xtr, s.ytr, (lo, hi), seed=seed)
        eta = TASK_ETA.get(task)
        room = None if eta is None or not penalty_term(obj) else 2 / eta - L_data
        rows.append({"task": task, "d": d, "L_data": L_data, "L": L, "auto_eta": c / L,
                     "eta": eta, "eta_L": None if eta is None else eta * L,
                     "lam_max": math.log(room) if room is not None and room > 0 else None})
    return rows


def format_task_table(rows) -> str:
    """:func:`task_table`'s rows as a Markdown table."""
    out = ["| task | L_data | L | auto eta = c / L | protocol eta | eta * L | stable lam < |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        f = (lambda v, p: "–" if v is None else f"{v:.{p}g}")
        out.append(f"| {r['task']} | {r['L_data']:.3g} | {r['L']:.3g} | {r['auto_eta']:.3g} "
                   f"| {f(r['eta'], 3)} | {f(r['eta_L'], 3)} | {f(r['lam_max'], 3)} |")
    return "\n".join(out)


__all__ = ["task_table", "format_task_table"]
