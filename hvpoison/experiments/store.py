"""The results folder: one record per (repetition, setting, fraction), written atomically.

::

    OUT/experiment.json      the configuration, its fingerprint, versions, machine
    OUT/records/r000-none-b2.json   test error, lam, ||w||^2/P, Kuncheva, trace, timings
    OUT/records/r000-none-b2.npz    the batch's poisoning points (Xp, yp, rows)
    OUT/records/r000-cv.json        lam_CV of repetition 0 (the 'cv' setting's input)
    (a record copied from another experiment's folder names it in ``copied_from``)
    OUT/summary.json, summary.csv   aggregates per (setting, fraction)

A record exists once its ``.json`` exists: the ``.npz`` is written first, each through a
temporary file and ``os.replace``, so an interrupted run leaves whole records or none.

The folder checks itself. A run holds an advisory lock on ``OUT/.lock`` (``flock``,
released by the operating system when the process dies, so a killed run leaves no stale
lock): a second run on the same folder stops at once. Before resuming, every record is
validated (its JSON parses, has the fields of its kind, names its own key, holds finite
numbers; its NPZ loads with consistent shapes and the experiment's batch size); one that
fails moves to ``OUT/records/quarantine/`` with a warning naming it, and is computed again.
A folder with records but no ``experiment.json`` is refused (its records could belong to
any experiment) unless ``overwrite``.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def atomic_write(path: Path, write):
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, obj):
    atomic_write(Path(path), lambda f: f.write(json.dumps(obj, indent=1).encode()))


def versions() -> dict:
    import numpy
    import scipy

    from .. import __version__

    out = {"hvpoison": __version__, "numpy": numpy.__version__, "scipy": scipy.__version__,
           "python": sys.version.split()[0], "platform": platform.platform(),
           "machine": platform.machine(), "cpus": os.cpu_count()}
    from importlib.metadata import PackageNotFoundError, version

    # numba / cupy and "kernels": whether twins or CUDA kernels ran (they agree with the
    # references to rounding, not bit for bit)
    for dist in ("distributed", "numba", "cupy", "cupy-cuda13x", "cupy-cuda12x", "cupy-cuda11x"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    try:
        from .. import kernels

        out["kernels"] = kernels.enabled()
    except ImportError:          # a source tree run without installing: references only
        out["kernels"] = False
    return out


class Store:
    """The results folder of one experiment."""

    def __init__(self, out):
        self.out = Path(out)
        self.records = self.out / "records"

    def key(self, rep, setting, b=None):
        return f"r{rep:03d}-{setting}" + ("" if b is None else f"-b{b}")

    def has(self, key) -> bool:
        return (self.records / f"{key}.json").is_file()

    def load(self, key) -> dict:
        return json.loads((self.records / f"{key}.json").read_text())

    def load_arrays(self, key) -> dict:
        with np.load(self.records / f"{key}.npz") as z:
            return {k: z[k] for k in z.files}

    def save(self, key, record: dict, arrays: dict | None = None):
        if arrays is not None:
            atomic_write(self.records / f"{key}.npz", lambda f: np.savez(f, **arrays))
        write_json(self.records / f"{key}.json", record)     # last: the record now exists

    def copy_from(self, other: "Store", key, fingerprint=None) -> bool:
        """Copy record ``key`` (and its arrays) from ``other`` if it has it; the copy notes
        where it came from (``copied_from``, and the fingerprint it had there) and, given
        ``fingerprint``, carries this folder's (the caller checked that the record does not
        depend on what differs). Returns whether it did."""
        if not other.has(key):
            return False
        record = dict(other.load(key), copied_from=str(other.out))
        if fingerprint is not None:
            record["copied_fingerprint"] = record.get("fingerprint")
            record["fingerprint"] = fingerprint
        arrays = other.load_arrays(key) if (other.records / f"{key}.npz").is_file() else None
        self.save(key, record, arrays)
        return True

    def finished(self, exp):
        """The summary of ``exp`` if a run of this very experiment (same fingerprint in
        ``experiment.json``) finished in this folder, else None."""
        try:
            meta = json.loads((self.out / "experiment.json").read_text())
            s = json.loads((self.out / "summary.json").read_text())
        except (OSError, ValueError):
            return None
        ok = isinstance(meta, dict) and isinstance(s, dict) and bool(s.get("complete")) \
            and meta.get("fingerprint") == exp.fingerprint()
        return s if ok else None

    def undefended_fingerprint(self):
        """``Experiment.fingerprint(undefended=True)`` of the experiment in this folder, or
        None when the folder holds none."""
        from .config import Experiment

        try:
            meta = json.loads((self.out / "experiment.json").read_text())
            return Experiment.from_dict(meta["config"]).fingerprint(undefended=True)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def all_records(self) -> list:
        if not self.records.is_dir():
            return []
        return [json.loads(p.read_text()) for p in sorted(self.records.glob("r*-b*.json"))]

    @contextlib.contextmanager
    def lock(self):
        """Hold ``OUT/.lock`` for the duration (``ValueError`` naming the folder and the
        holder's pid when another process holds it)."""
        import fcntl

        self.out.mkdir(parents=True, exist_ok=True)
        f = open(self.out / ".lock", "a+")
        try:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "?"
                raise ValueError(f"--out: expected a results folder no other run is using, "
                                 f"got {self.out} (in use by hvpoison process {holder}; "
                                 "wait for it to finish or choose another folder)") from None
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            yield self
        finally:
            f.close()                      # closing releases the lock

    def validate(self, exp) -> list:
        """Quarantine every record of the folder that fails :func:`record_problem` for
        ``exp``; returns ``[(key, message), ...]`` of those moved."""
        if not self.records.is_dir():
            return []
        bad = []
        for p in sorted(self.records.glob("r*.json")):
            reason = record_problem(self, p.stem, exp)
            if reason is not None:
                q = self.records / "quarantine"
                q.mkdir(exist_ok=True)
                for f in (p, p.with_suffix(".npz")):
                    if f.exists():
                        os.replace(f, q / f.name)
                bad.append((p.stem, f"{p}: {reason}; moved to {q}/ and computed again"))
        return bad

    def open(self, exp, overwrite=False):
        """Create the folder, or check that it holds the same experiment (then resume);
        call it while holding :meth:`lock`."""
        meta_path = self.out / "experiment.json"
        self.clean_temporary()
        if not meta_path.is_file() and not overwrite and self.records.is_dir() and \
                any(self.records.glob("r*.json")):
            raise ValueError(f"--out: {self.out} holds records but no experiment.json, so "
                             "nothing says which experiment they belong to; choose another "
                             "folder (--out), or pass --overwrite to discard them")
        mine = self.outputs_not_ours() if not meta_path.is_file() and not overwrite else []
        if mine:
            raise ValueError(f"--out: expected a new or results folder, got {self.out}, which "
                             f"holds {', '.join(mine)} but no experiment.json (files this "
                             "run would overwrite); choose another folder (--out), or pass "
                             "--overwrite to replace them")
        if meta_path.is_file() and not overwrite:
            try:
                meta = json.loads(meta_path.read_text())
            except ValueError as exc:
                raise ValueError(f"{meta_path}: not valid JSON ({exc}); restore it or pass "
                                 "--overwrite") from None
            if not isinstance(meta, dict) or meta.get("fingerprint") != exp.fingerprint():
                raise ValueError(self.different(meta, exp))
            return meta
        if overwrite and self.records.is_dir():
            import shutil

            for p in self.records.iterdir():
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        meta = {"config": exp.to_dict(), "fingerprint": exp.fingerprint(),
                "versions": versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        write_json(meta_path, meta)
        return meta


    #: what a run writes at the top of its folder (besides experiment.json and records/)
    OUTPUTS = ("summary.json", "summary.csv", "summary.png", "summary.pdf", "poison.png",
               "poison.pdf")

    def outputs_not_ours(self) -> list:
        """The files of :data:`OUTPUTS` already in the folder (of no experiment here)."""
        return [n for n in self.OUTPUTS if (self.out / n).exists()]

    def clean_temporary(self):
        """Remove the temporary files (``.NAME*.tmp``) of writes cut short by a kill, in the
        folder and in ``records/``; a resume then starts from whole files only."""
        for folder in (self.out, self.records):
            if folder.is_dir():
                for p in folder.glob(".*.tmp"):
                    p.unlink()

    def different(self, meta, exp) -> str:
        """The error for a folder that holds another experiment: the keys that differ,
        with both values, and every way on."""
        count = len(list(self.records.glob("r*.json"))) if self.records.is_dir() else 0
        what = difference(meta, exp)
        return (f"--out: {self.out} holds {count} records of a different experiment ({what});"
                " choose another folder (--out), run the folder's own experiment to resume "
                "it, or pass --overwrite to discard its records")


def difference(meta, exp) -> str:
    """How the experiment of ``meta`` (an ``experiment.json``) differs from ``exp``: the keys
    that differ, with both values (a key missing there: its default), or the fingerprints
    when no key does."""
    from .config import Experiment, differing_keys

    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        return "an experiment.json without a configuration"
    there = meta["config"]
    with contextlib.suppress(ValueError, TypeError, KeyError):     # its defaults filled in
        there = Experiment.from_dict(there).to_dict()
    diffs = differing_keys(there, exp.to_dict())
    if not diffs:
        return (f"the same keys, but fingerprint {meta.get('fingerprint')} there and "
                f"{exp.fingerprint()} here (another hvpoison's recipe)")
    return ("; ".join(f"{k} = {a!r} there, {b!r} here" for k, a, b in diffs[:8])
            + (f" (and {len(diffs) - 8} more)" if len(diffs) > 8 else ""))


_FIELDS = {"unit": ("rep", "setting", "b", "fraction", "test_error", "train_error", "lam",
                    "w_norm2", "kuncheva", "seconds"),
           "cv": ("rep", "lam_cv", "grid", "cv_loss", "seconds")}


def _finite(v) -> bool:
    if isinstance(v, bool):
        return True
    if isinstance(v, (int, float)):
        return math.isfinite(v)
    if isinstance(v, dict):
        return all(_finite(x) for x in v.values())
    if isinstance(v, (list, tuple)):
        return all(_finite(x) for x in v)
    return True


def foreign_record(rec, exp):
    """Why ``rec`` belongs to another experiment than ``exp`` (its ``fingerprint``, or for a
    record written before records carried one, its ``seeds``), or None."""
    fp = rec.get("fingerprint")
    if fp is not None and fp != exp.fingerprint():
        return (f"a record of another experiment (fingerprint {fp}, this folder's "
                f"{exp.fingerprint()})")
    if fp is None and "seeds" in rec and isinstance(rec.get("rep"), int):
        from .runner import seeds

        if rec["seeds"] != seeds(exp, rec["rep"]):
            return "a record of another experiment (its seeds are not this experiment's)"
    return None


def record_problem(store, key, exp):
    """Why record ``key`` of ``store`` cannot be used for ``exp``, or None if it can."""
    path = store.records / f"{key}.json"
    try:
        rec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return f"not a valid JSON record ({type(exc).__name__}: {exc})"
    if not isinstance(rec, dict):
        return f"not a JSON object but {type(rec).__name__}"
    kind = "cv" if key.endswith("-cv") else "unit"
    missing = [f for f in _FIELDS[kind] if f not in rec]
    if missing:
        return f"missing fields {missing}"
    own = store.key(rec["rep"], "cv" if kind == "cv" else rec["setting"],
                    None if kind == "cv" else rec["b"]) \
        if isinstance(rec["rep"], int) and (kind == "cv" or isinstance(rec["b"], int)) else None
    if own != key:
        return f"its fields name another record ({own})"
    foreign = foreign_record(rec, exp)
    if foreign:
        return foreign
    if kind == "cv":
        return None if _finite(rec["lam_cv"]) else "a non-finite lam_CV"
    if not (_finite(rec["test_error"]) and _finite(rec["w_norm2"]) and _finite(rec["lam"])
            and isinstance(rec["test_error"], (int, float)) and 0 <= rec["test_error"] <= 1):
        return "non-finite or out-of-range numbers (test_error, w_norm2 or lam)"
    npz = path.with_suffix(".npz")
    if not npz.is_file():
        return "its .npz (the poisoning points) is missing"
    try:
        z = store.load_arrays(key)
        rows, Xp, yp = z["rows"], z["Xp"], z["yp"]
    except Exception as exc:  # noqa: BLE001 - any unreadable archive is a bad record
        return f"its .npz does not load ({type(exc).__name__}: {exc})"
    n_new = 0 if rec["b"] == 0 else exp.attack.n_poison
    if rows.shape != (n_new,) or yp.shape != (n_new,) or Xp.ndim != 2 or \
            Xp.shape[0] != n_new or ("X0" in z and z["X0"].shape != Xp.shape):
        return (f"its .npz holds {rows.shape[0] if rows.ndim else '?'} points of shape "
                f"{Xp.shape}, not batch {rec['b']}'s {n_new}")
    if "b" in z and int(z["b"]) != rec["b"]:
        return f"its .npz is batch {int(z['b'])}'s, not batch {rec['b']}'s"
    n_rows = exp.data.n_tr + (rec["b"] * n_new if exp.attack.placement == "add" else 0)
    if n_new and (rows.min() < 0 or rows.max() >= n_rows or
                  not np.isfinite(Xp).all()):
        return "its .npz holds rows outside the training set or non-finite points"
    return None
