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
"""
from __future__ import annotations

import json
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
    for dist in ("distributed", "numba", "cupy", "cupy-cuda12x", "cupy-cuda11x"):
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

    def copy_from(self, other: "Store", key) -> bool:
        """Copy record ``key`` (and its arrays) from ``other`` if it has it; the copy notes
        where it came from. Returns whether it did."""
        if not other.has(key):
            return False
        record = dict(other.load(key), copied_from=str(other.out))
        arrays = other.load_arrays(key) if (other.records / f"{key}.npz").is_file() else None
        self.save(key, record, arrays)
        return True

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

    def open(self, exp, overwrite=False):
        """Create the folder, or check that it holds the same experiment (then resume)."""
        meta_path = self.out / "experiment.json"
        if self.records.is_dir():                  # a write cut short by a kill
            for p in self.records.glob(".*.tmp"):
                p.unlink()
        if meta_path.is_file() and not overwrite:
            meta = json.loads(meta_path.read_text())
            if meta.get("fingerprint") != exp.fingerprint():
                raise ValueError(f"--out: {self.out} holds results of a different experiment "
                                 f"(fingerprint {meta.get('fingerprint')}, this one "
                                 f"{exp.fingerprint()}); choose another folder or pass "
                                 "--overwrite")
            return meta
        if overwrite and self.records.is_dir():
            for p in self.records.iterdir():
                p.unlink()
        meta = {"config": exp.to_dict(), "fingerprint": exp.fingerprint(),
                "versions": versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        write_json(meta_path, meta)
        return meta
