"""The binary tasks of Sect. V, their balanced seeded splits, the embedded MNIST subset and
the synthetic 2-D task of Fig. 1.

================  =========================  ===============  ==========  ================
task              classes (label 0 vs 1)     pixels           d           default n_val
================  =========================  ===============  ==========  ================
``mnist``         digit 0 vs digit 8         [0, 1]           784         n_tr / 10
``fmnist``        trouser (1) vs pullover(2) [0, 1]           784         n_tr / 10
``cifar10``       airplane (0) vs frog (6)   [-1, 1]          3072        n_tr / 5
``mnist-mini``    MNIST 0 vs 8, embedded     [0, 1]           784         n_tr / 10
``synthetic2d``   two 2-D Gaussians          (unbounded)      2           n_tr
================  =========================  ===============  ==========  ================

Splits are drawn from the joint pool of the original training and test files, per class,
without replacement, so training, validation and test sets are disjoint and balanced
(an odd size gives class 0 the extra row); the same ``seed`` gives the same split.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from .. import _checks
from .formats import DataError, read_cifar_pickle, read_cifar_records, read_idx
from .sources import DATASETS, find_cifar_batches, locate

TASKS = {   # task -> (dataset, (class for label 0, class for label 1), scale, n_val / n_tr)
    "mnist": ("mnist", (0, 8), "unit", 0.1),
    "fmnist": ("fashion-mnist", (1, 2), "unit", 0.1),
    "cifar10": ("cifar10", (0, 6), "symmetric", 0.2),
    "mnist-mini": ("embedded", (0, 8), "unit", 0.1),
}
EMBEDDED = "mnist08_mini.npz"
DEFAULT_N_TEST = 2000


@dataclass
class Split:
    """One seeded, balanced split of a task. Arrays are ``(n, d)`` features and ``(n,)``
    labels in {0, 1}; ``meta`` records the task, sizes, seed and source files."""

    Xtr: np.ndarray
    ytr: np.ndarray
    Xval: np.ndarray
    yval: np.ndarray
    Xte: np.ndarray
    yte: np.ndarray
    meta: dict = field(default_factory=dict)
    origin: dict = field(default_factory=dict)   # split -> row indices in train+test files

    @property
    def box(self):
        """The feature box ``Phi`` of the task (the attack's projection)."""
        return tuple(self.meta["box"])


def _select(parts, classes):
    X = np.concatenate([p[0] for p in parts])
    lab = np.concatenate([p[1] for p in parts])
    keep = np.flatnonzero((lab == classes[0]) | (lab == classes[1]))
    return X[keep], (lab[keep] == classes[1]).astype(np.int8), keep


@functools.lru_cache(maxsize=4)
def class_pool(dataset, classes, data_dir, download):
    """The two ``classes`` of ``dataset`` from its training and test files:
    ``(uint8 images (N, d), labels in {0,1} (N,), index in train+test (N,))``."""
    if dataset == "embedded":
        with resources.files(__package__).joinpath(EMBEDDED).open("rb") as f:
            z = np.load(f)
            return z["images"], z["labels"].astype(np.int8), z["origin"]
    if dataset == "cifar10":
        return _cifar_pool(classes, data_dir, download)
    paths = locate(dataset, data_dir, download)
    spec = DATASETS[dataset]["files"]
    parts = []
    for split in ("train", "test"):
        images = read_idx(paths[f"{split}_images"], 0x803, spec[f"{split}_images"].sha256)
        labels = read_idx(paths[f"{split}_labels"], 0x801, spec[f"{split}_labels"].sha256)
        parts.append((images.reshape(len(images), -1), labels))
    return _select(parts, classes)


def _cifar_pool(classes, data_dir, download):
    """The airplane/frog subset files (checksummed) if present, else the original batches
    (binary or python; structure-checked), else a download."""
    spec = DATASETS["cifar10"]["files"]
    try:
        paths = locate("cifar10", data_dir, download=False)
    except DataError:
        batches = find_cifar_batches(data_dir)
        if batches is None:
            paths = locate("cifar10", data_dir, download)
        else:
            kind, train, test = batches
            read = read_cifar_records if kind == "bin" else read_cifar_pickle
            parts = [read(p) for p in train + test]
            return _select(parts, classes)
    parts = [read_cifar_records(paths[k], spec[k].sha256) for k in ("train", "test")]
    return _select(parts, classes)


def _balanced(n):
    return (n + 1) // 2, n // 2


def load_task(task, n_tr=1000, n_val=None, n_test=DEFAULT_N_TEST, *, seed=0, data_dir=None,
              download=True, dtype=np.float64) -> Split:
    """A balanced, seeded split of ``task`` (see the module table).

    ``n_val`` defaults to ``n_tr / 10`` (``n_tr / 5`` for CIFAR-10); ``n_test`` to 2000.
    ``data_dir`` is searched before the cache; ``download=False`` never touches the network.
    """
    if task == "synthetic2d":
        return synthetic2d(n_tr, n_val, n_test, seed=seed, dtype=dtype)
    if task not in TASKS:
        _checks.fail("task", f"one of {sorted(TASKS) + ['synthetic2d']}", repr(task))
    dtype = _checks.floating_dtype("dtype", dtype)
    _, classes, scale, val_ratio = TASKS[task]
    n_tr = _checks.positive_int("n_tr", n_tr)
    n_val = max(2, int(round(n_tr * val_ratio))) if n_val is None else _checks.positive_int("n_val", n_val)
    n_test = _checks.positive_int("n_test", n_test)
    images, labels, origin = class_pool(TASKS[task][0], classes,
                                   None if data_dir is None else str(data_dir), download)
    sizes = (n_tr, n_val, n_test)
    rng = np.random.default_rng(seed)
    idx = [[], [], []]
    for c in (0, 1):
        members = rng.permutation(np.flatnonzero(labels == c))
        need = [_balanced(n)[c] for n in sizes]
        if sum(need) > members.size:
            _checks.fail("n_tr + n_val + n_test", f"at most {2 * members.size} rows "
                         f"(task {task!r} has {members.size} of class {c})", sum(sizes))
        start = 0
        for s, k in enumerate(need):
            idx[s].append(members[start:start + k])
            start += k
    out, where = [], {}
    for s, name in enumerate(("train", "val", "test")):
        rows = rng.permutation(np.concatenate(idx[s]))
        X = images[rows].astype(dtype)
        X = X / 255.0 if scale == "unit" else X / 127.5 - 1.0
        out += [X.astype(dtype, copy=False), labels[rows].astype(dtype)]
        where[name] = origin[rows]
    box = (0.0, 1.0) if scale == "unit" else (-1.0, 1.0)
    meta = {"task": task, "classes": list(classes), "n_tr": n_tr, "n_val": n_val,
            "n_test": n_test, "seed": seed, "d": int(images.shape[1]), "box": list(box)}
    return Split(*out, meta=meta, origin=where)


def synthetic2d(n_tr=32, n_val=None, n_test=1000, *, seed=0, mean=1.0, std=1.0,
                dtype=np.float64) -> Split:
    """Fig. 1's task: two 2-D Gaussians, class 0 at ``(-mean, -mean)`` and class 1 at
    ``(mean, mean)``, isotropic ``std``; ``n_val`` defaults to ``n_tr``.  The paper's means
    and covariances are not recoverable (METHOD.md); these are ours."""
    n_tr = _checks.positive_int("n_tr", n_tr)
    n_val = n_tr if n_val is None else _checks.positive_int("n_val", n_val)
    n_test = _checks.positive_int("n_test", n_test)
    rng = np.random.default_rng(seed)

    def draw(n):
        y = rng.permutation(np.repeat([0.0, 1.0], _balanced(n)))
        X = rng.normal(scale=std, size=(n, 2)) + np.where(y[:, None] > 0, mean, -mean)
        return X.astype(dtype), y.astype(dtype)

    (Xtr, ytr), (Xv, yv), (Xte, yte) = draw(n_tr), draw(n_val), draw(n_test)
    lo = float(min(Xtr.min(), Xv.min())); hi = float(max(Xtr.max(), Xv.max()))
    meta = {"task": "synthetic2d", "n_tr": n_tr, "n_val": n_val, "n_test": n_test,
            "seed": seed, "d": 2, "box": [lo, hi], "mean": mean, "std": std}
    return Split(Xtr, ytr, Xv, yv, Xte, yte, meta=meta)
