"""Where data files come from, in order:

1. a directory the user names (``data_dir=`` / ``--data-dir``, else ``$HVPOISON_DATA``);
2. the user cache, ``$HVPOISON_CACHE`` or ``$XDG_CACHE_HOME/hvpoison`` (``~/.cache/hvpoison``);
3. a download from the official source into the cache, checksum-verified, with a progress
   bar; offline, an error that says which file to place where.

A directory holds one sub-directory per dataset, named as in ``../shared/datasets``:
``mnist/``, ``fashion-mnist/``, ``cifar10/`` (files directly in the directory are found too).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .formats import CIFAR_RECORD, DataError, parse_cifar_records, read_bytes, verify


@dataclass(frozen=True)
class File:
    name: str               # file name as distributed (.gz)
    sha256: str             # of the decompressed content (so .gz and raw copies both verify)
    magic: int = 0          # IDX magic (0 for CIFAR records)


_MNIST_URLS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
               "http://yann.lecun.com/exdb/mnist/")
_FMNIST_URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
CIFAR_TARBALL = ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
                 "c32a1d4ab5d03f1284b67883e8d87530")    # (url, md5 published with it)

DATASETS = {
    "mnist": {"urls": _MNIST_URLS, "files": {
        "train_images": File("train-images-idx3-ubyte.gz", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 0x803),
        "train_labels": File("train-labels-idx1-ubyte.gz", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 0x801),
        "test_images": File("t10k-images-idx3-ubyte.gz", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 0x803),
        "test_labels": File("t10k-labels-idx1-ubyte.gz", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 0x801)}},
    "fashion-mnist": {"urls": _FMNIST_URLS, "files": {
        "train_images": File("train-images-idx3-ubyte.gz", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 0x803),
        "train_labels": File("train-labels-idx1-ubyte.gz", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 0x801),
        "test_images": File("t10k-images-idx3-ubyte.gz", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 0x803),
        "test_labels": File("t10k-labels-idx1-ubyte.gz", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 0x801)}},
    # The airplane (0) / frog (6) records of the binary version, in the original order; built
    # from the official tarball on download (see fetch_cifar10).
    "cifar10": {"urls": (CIFAR_TARBALL[0],), "files": {
        "train": File("airplane_frog_train.bin.gz", "c28a00cb918000124b74f98a6464898282573b379ac93054bbb408e716163257"),
        "test": File("airplane_frog_test.bin.gz", "84c187f863f181a62ec434e788fcc318b16292b33a7ab90f825dea05c12f9bd7")}},
}
CIFAR_CLASSES = (0, 6)


def cache_dir() -> Path:
    if os.environ.get("HVPOISON_CACHE"):
        return Path(os.environ["HVPOISON_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "hvpoison"


def search_dirs(data_dir=None) -> list:
    """The directories searched, in order (the user's, then the cache)."""
    user = data_dir if data_dir is not None else os.environ.get("HVPOISON_DATA")
    dirs = [Path(user).expanduser()] if user else []
    if user and not dirs[0].is_dir():
        raise DataError(f"data_dir: expected an existing directory, got {str(dirs[0])!r}")
    return dirs + [cache_dir()]


def _candidates(directory: Path, dataset: str, name: str):
    for d in (directory / dataset, directory):
        yield d / name
        if name.endswith(".gz"):
            yield d / name[:-3]                 # an uncompressed copy is fine too


def find(dataset: str, key: str, data_dir=None):
    """Path of a dataset file in the search directories, or None."""
    f = DATASETS[dataset]["files"][key]
    for directory in search_dirs(data_dir):
        for p in _candidates(directory, dataset, f.name):
            if p.is_file():
                return p
    return None


def find_cifar_batches(data_dir=None):
    """The original CIFAR-10 batches (``cifar-10-batches-bin/*.bin`` or the python
    ``cifar-10-batches-py/``) in a search directory: ``(kind, train paths, test paths)``."""
    names = {"bin": ([f"data_batch_{i}.bin" for i in range(1, 6)], ["test_batch.bin"]),
             "py": ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"])}
    for directory in search_dirs(data_dir):
        for base in (directory / "cifar10", directory):
            for kind, (train, test) in names.items():
                d = base / f"cifar-10-batches-{kind}"
                if all((d / n).is_file() for n in train + test):
                    return kind, [d / n for n in train], [d / n for n in test]
    return None


def locate(dataset: str, data_dir=None, download=True) -> dict:
    """``{key: path}`` for every file of ``dataset``, downloading into the cache when allowed."""
    if dataset not in DATASETS:
        raise DataError(f"dataset: expected one of {sorted(DATASETS)}, got {dataset!r}")
    paths = {k: find(dataset, k, data_dir) for k in DATASETS[dataset]["files"]}
    missing = [k for k, p in paths.items() if p is None]
    if missing and download:
        fetch(dataset)
        paths = {k: find(dataset, k, data_dir) for k in DATASETS[dataset]["files"]}
        missing = [k for k, p in paths.items() if p is None]
    if missing:
        names = ", ".join(DATASETS[dataset]["files"][k].name for k in missing)
        where = " or ".join(str(d / dataset) for d in search_dirs(data_dir))
        raise DataError(f"{dataset}: {names} not found; place the file(s) in {where}, "
                        f"pass --data-dir, or run `hvpoison data fetch {dataset}` with network")
    return paths


class _Progress:
    """A one-line progress bar on stderr (only on a terminal unless forced)."""

    def __init__(self, label, total, stream=None):
        self.label, self.total, self.done = label, total, 0
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()

    def update(self, n):
        self.done += n
        if self.live:
            frac = self.done / self.total if self.total else 0
            bar = "#" * int(30 * frac)
            self.stream.write(f"\r{self.label} [{bar:<30}] {self.done / 1e6:6.1f} MB")
            self.stream.flush()

    def close(self):
        if self.live:
            self.stream.write("\n")


def download(url: str, timeout=30.0) -> bytes:
    """GET ``url`` into memory with a progress bar; a clear DataError when it fails."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            total = int(r.headers.get("Content-Length") or 0)
            bar, buf = _Progress(url.rsplit("/", 1)[-1], total), io.BytesIO()
            while chunk := r.read(1 << 20):
                buf.write(chunk)
                bar.update(len(chunk))
            bar.close()
            return buf.getvalue()
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot download {url}: {exc}") from None


def _atomic_write(path: Path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".part")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def fetch(dataset: str, force=False) -> dict:
    """Download ``dataset`` into the cache (verified); returns ``{key: path}``.
    Files already in the cache are kept unless ``force``."""
    if dataset not in DATASETS:
        raise DataError(f"dataset: expected one of {sorted(DATASETS)}, got {dataset!r}")
    if dataset == "cifar10":
        return fetch_cifar10(force)
    spec, out = DATASETS[dataset], {}
    for key, f in spec["files"].items():
        dest = cache_dir() / dataset / f.name
        if dest.is_file() and not force:
            out[key] = dest
            continue
        errors = []
        for base in spec["urls"]:
            try:
                blob = download(base + f.name)
                verify(base + f.name, gzip.decompress(blob), f.sha256)
                break
            except (DataError, OSError, EOFError) as exc:
                errors.append(str(exc))
        else:
            raise DataError(f"{dataset}: could not fetch {f.name} ({'; '.join(errors)}); "
                            f"place it in {dest.parent} by hand")
        _atomic_write(dest, blob)
        out[key] = dest
    return out


def fetch_cifar10(force=False) -> dict:
    """Download the official binary tarball (md5-verified), keep the airplane and frog
    records in their original order, write them gzipped to the cache, verify them."""
    spec = DATASETS["cifar10"]["files"]
    dests = {k: cache_dir() / "cifar10" / f.name for k, f in spec.items()}
    if all(p.is_file() for p in dests.values()) and not force:
        return dests
    url, md5 = CIFAR_TARBALL
    blob = download(url)
    if hashlib.md5(blob).hexdigest() != md5:
        raise DataError(f"{url}: checksum mismatch: expected md5 {md5}, "
                        f"got {hashlib.md5(blob).hexdigest()}")
    members = {"train": [f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)],
               "test": ["cifar-10-batches-bin/test_batch.bin"]}
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        for key, names in members.items():
            parts = []
            for name in names:
                data = tar.extractfile(name).read()
                _, labels = parse_cifar_records(data, f"{url}:{name}")
                keep = (labels == CIFAR_CLASSES[0]) | (labels == CIFAR_CLASSES[1])
                rec = np.frombuffer(data, np.uint8).reshape(-1, CIFAR_RECORD)
                parts.append(rec[keep].tobytes())
            content = b"".join(parts)
            verify(dests[key], content, spec[key].sha256)
            _atomic_write(dests[key], gzip.compress(content, 9, mtime=0))
    return dests


def check(dataset: str, data_dir=None) -> dict:
    """Verify every file of ``dataset`` that can be found; ``{key: (path, "ok" | error)}``."""
    from .formats import parse_cifar_records, parse_idx

    out = {}
    for key, f in DATASETS[dataset]["files"].items():
        p = find(dataset, key, data_dir)
        if p is None:
            out[key] = (None, "missing")
            continue
        try:
            data = read_bytes(p)
            verify(p, data, f.sha256)
            parse_idx(data, p, f.magic) if f.magic else parse_cifar_records(data, p)
            out[key] = (p, "ok")
        except DataError as exc:
            out[key] = (p, str(exc))
    return out
