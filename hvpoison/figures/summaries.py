"""Where a figure's numbers come from, per experiment: the finished summary of that very
experiment in ``out`` (**redrawn**: no dataset, no record, seconds), or a run of it
(**computed**, resuming its records as ``hvpoison run`` does) when its summary is missing or
when asked (``recompute``).

A summary is drawn only under the ``experiment.json`` of the same fingerprint
(:meth:`hvpoison.experiments.Store.finished`): a folder that holds another experiment (an
older protocol, other settings) is refused with the keys that differ, never drawn.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..experiments import Experiment, Store
from ..experiments.store import difference

REDRAW, COMPUTE, SKIP = "redrawn", "computed", "not drawn"


@dataclass
class Source:
    """One experiment of a figure: its folder, what to do with it (``action``: one of
    :data:`REDRAW`, :data:`COMPUTE`, :data:`SKIP`), why, and its summary once known."""

    exp: Experiment
    folder: Path
    action: str
    why: str = ""
    summary: dict | None = None


def foreign(folder: Path, exp) -> str | None:
    """Why ``folder`` holds another experiment than ``exp``, or None (same experiment, or no
    experiment at all)."""
    meta_path = folder / "experiment.json"
    if not meta_path.is_file():
        return None if not (folder / "summary.json").is_file() else \
            "a summary.json without experiment.json, so nothing says which experiment it is"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        return f"an experiment.json that does not parse ({exc})"
    if isinstance(meta, dict) and meta.get("fingerprint") == exp.fingerprint():
        return None
    return f"another experiment: {difference(meta, exp)}"


def source(exp, out: Path, chosen: bool, recompute: bool) -> Source:
    """What to do with ``exp`` in ``out``: a ``chosen`` one (its task was asked for) is
    redrawn from its finished summary, else computed; another one is redrawn when finished,
    else left out. A folder of another experiment: ``ValueError`` when chosen, else left out
    with the reason."""
    folder = out / exp.name
    why = foreign(folder, exp)
    if why is not None and chosen:
        raise ValueError(f"--out: expected {folder} to hold the experiment {exp.name} of "
                         f"this figure (or nothing), got {why}; its summary is not drawn: "
                         "move the folder away, or choose another --out, to compute it")
    if why is not None:
        return Source(exp, folder, SKIP, why)
    summary = None if chosen and recompute else Store(folder).finished(exp)
    if summary is not None:
        return Source(exp, folder, REDRAW, summary=summary)
    if chosen:
        return Source(exp, folder, COMPUTE, "--recompute" if recompute else
                      "no finished summary there")
    return Source(exp, folder, SKIP)


def plan(configs, out, tasks=None, recompute=False) -> list:
    """A :class:`Source` per experiment dict of ``configs``; ``tasks`` (None: all) are the
    tasks whose experiments may run."""
    exps = [Experiment.from_dict(c) for c in configs]
    return [source(e, Path(out), tasks is None or e.data.task in tasks, recompute)
            for e in exps]


def report(name, sources, out) -> str:
    """One line: what figure ``name`` was drawn from (redrawn / computed / left out)."""
    redrawn = [s for s in sources if s.action == REDRAW]
    computed = [s for s in sources if s.action == COMPUTE]
    parts = [f"redrawn from {len(redrawn)} summar{'y' if len(redrawn) == 1 else 'ies'} "
             f"in {out}"] if redrawn else []
    names = ", ".join(s.exp.name for s in computed)
    plural = "s" * (len(computed) != 1)
    if computed and computed[0].why == "--recompute":
        parts.append(f"ran {len(computed)} experiment{plural} again (--recompute, finished "
                     f"records resumed) in {out}: {names}")
    elif computed:
        parts.append(f"computed {len(computed)} missing experiment{plural} in {out}: {names}")
    else:
        parts = [p + " (no experiment run; --recompute to run them again)" for p in parts]
    parts += [f"not drawn: {s.folder} ({s.why})" for s in sources
              if s.action == SKIP and s.why]
    return f"{name}: " + "; ".join(parts)
