"""Readers for the original file formats, with structural checks.

* IDX (MNIST, Fashion-MNIST): big-endian header ``0x00 0x00 <type> <ndim>``, then ``ndim``
  uint32 sizes, then the data; images are magic ``0x00000803`` (``N x 28 x 28`` uint8),
  labels ``0x00000801`` (``N`` uint8).
* CIFAR-10 binary records: no header, 3073 bytes a record: one label byte, then 1024 R,
  1024 G and 1024 B bytes (each plane 32 x 32, row-major).
* CIFAR-10 python batches: a pickled dict with ``b"data"`` (``N x 3072`` uint8, the same
  plane order) and ``b"labels"``.

Every reader accepts a plain or a ``.gz`` file and raises :class:`DataError` naming the file
for anything truncated, corrupted or of the wrong shape.
"""
from __future__ import annotations

import gzip
import hashlib
import pickle
import zlib
from pathlib import Path

import numpy as np

CIFAR_RECORD = 3073
IDX_DTYPES = {0x08: np.uint8}


class DataError(ValueError):
    """A data file is missing, truncated, corrupted or not what its name says."""


def read_bytes(path) -> bytes:
    """The file's content, gunzipped when it ends in ``.gz`` (CRC and length checked)."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise DataError(f"{path}: cannot be read as {'gzip' if path.suffix == '.gz' else 'a file'}"
                        f" (truncated or corrupted?): {exc}") from None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify(path, data: bytes, expected_sha256) -> None:
    """Raise unless ``sha256(data)`` (the decompressed content) is ``expected_sha256``."""
    if expected_sha256 is not None and sha256(data) != expected_sha256:
        raise DataError(f"{path}: checksum mismatch: expected sha256 {expected_sha256} of the "
                        f"decompressed content, got {sha256(data)} (corrupted or a different "
                        "file; delete it and fetch it again)")


def parse_idx(data: bytes, path="<bytes>", magic=None) -> np.ndarray:
    """Decode an IDX buffer into an array of its declared shape; ``magic`` (e.g.
    ``0x803``) is checked when given."""
    if len(data) < 4:
        raise DataError(f"{path}: {len(data)} bytes, too short for an IDX header")
    zero, dtype_code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    got_magic = int.from_bytes(data[:4], "big")
    if zero != 0 or dtype_code not in IDX_DTYPES or (magic is not None and got_magic != magic):
        want = f"0x{magic:08x}" if magic is not None else "an uint8 IDX magic"
        raise DataError(f"{path}: bad IDX magic number: expected {want}, got 0x{got_magic:08x}")
    head = 4 + 4 * ndim
    if len(data) < head:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape))
    if len(data) != head + size:
        raise DataError(f"{path}: IDX size mismatch: header says {shape} = {size} bytes of data, "
                        f"file has {len(data) - head} (truncated?)")
    return np.frombuffer(data, dtype=IDX_DTYPES[dtype_code], offset=head).reshape(shape)


def read_idx(path, magic=None, sha256_expected=None) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw); verify ``magic`` and the content checksum."""
    data = read_bytes(path)
    verify(path, data, sha256_expected)
    return parse_idx(data, path, magic)


def parse_cifar_records(data: bytes, path="<bytes>"):
    """CIFAR-10 binary records -> ``(images (N, 3072) uint8 in R,G,B plane order,
    labels (N,) uint8)``."""
    if len(data) == 0 or len(data) % CIFAR_RECORD:
        raise DataError(f"{path}: {len(data)} bytes is not a whole number of "
                        f"{CIFAR_RECORD}-byte CIFAR-10 records (truncated?)")
    rec = np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    labels = rec[:, 0].copy()
    if labels.max() > 9:
        raise DataError(f"{path}: label byte {int(labels.max())} outside 0..9; "
                        "not a CIFAR-10 record file")
    return rec[:, 1:].copy(), labels


def read_cifar_records(path, sha256_expected=None):
    data = read_bytes(path)
    verify(path, data, sha256_expected)
    return parse_cifar_records(data, path)


def read_cifar_pickle(path):
    """A CIFAR-10 python batch (``data_batch_k`` / ``test_batch``) -> ``(images, labels)``."""
    data = read_bytes(path)
    try:
        d = pickle.loads(data, encoding="bytes")
        images = np.asarray(d[b"data"], dtype=np.uint8)
        labels = np.asarray(d[b"labels"], dtype=np.uint8)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise DataError(f"{path}: not a CIFAR-10 python batch: {exc!r}") from None
    if images.ndim != 2 or images.shape[1] != 3072 or labels.shape != (images.shape[0],):
        raise DataError(f"{path}: expected data of shape (N, 3072) and N labels, got "
                        f"{images.shape} and {labels.shape}")
    if labels.size and labels.max() > 9:
        raise DataError(f"{path}: label {int(labels.max())} outside 0..9")
    return images, labels
