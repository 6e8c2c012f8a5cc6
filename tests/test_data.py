"""Datasets: readers against the real files, corrupted and truncated copies, where files come
from (user dir, cache, download), splits, the embedded subset and the 2-D task."""
import gzip
import hashlib
import io
import os
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from hvpoison.data import DataError, load_task, read_cifar_pickle, read_cifar_records, read_idx
from hvpoison.data import embedded, sources, tasks

SHARED = Path(os.environ.get("HVPOISON_TEST_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "datasets"))
needs_shared = pytest.mark.skipif(
    not (SHARED / "mnist").is_dir(),
    reason=f"the original dataset files are not at {SHARED} (CI has them beside the clone; "
           "set HVPOISON_TEST_DATA to run these tests elsewhere)")


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    """Every test starts with an empty private cache and no HVPOISON_DATA."""
    monkeypatch.setenv("HVPOISON_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HVPOISON_DATA", raising=False)
    tasks.class_pool.cache_clear()
    yield
    tasks.class_pool.cache_clear()


# -- readers against the real files ----------------------------------------------------------
@needs_shared
@pytest.mark.parametrize("ds, counts", [
    ("mnist", {"train": (60000, {0: 5923, 8: 5851}), "t10k": (10000, {0: 980, 8: 974})}),
    ("fashion-mnist", {"train": (60000, {1: 6000, 2: 6000}), "t10k": (10000, {1: 1000, 2: 1000})}),
])
def test_idx_readers_on_the_real_files(ds, counts):
    for split, (n, classes) in counts.items():
        images = read_idx(SHARED / ds / f"{split}-images-idx3-ubyte.gz", 0x803)
        labels = read_idx(SHARED / ds / f"{split}-labels-idx1-ubyte.gz", 0x801)
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (n,) and set(np.unique(labels)) == set(range(10))
        for c, k in classes.items():
            assert (labels == c).sum() == k
        assert images.max() == 255 and images.min() == 0


@needs_shared
def test_cifar_records_reader_on_the_real_files():
    for name, n in (("airplane_frog_train.bin.gz", 10000), ("airplane_frog_test.bin.gz", 2000)):
        images, labels = read_cifar_records(SHARED / "cifar10" / name,
                                            sources.DATASETS["cifar10"]["files"]
                                            ["train" if "train" in name else "test"].sha256)
        assert images.shape == (n, 3072) and labels.shape == (n,)
        assert {int(c): int((labels == c).sum()) for c in np.unique(labels)} == {0: n // 2, 6: n // 2}
    # the README's published first pixels: train image 0 is record 0 here (class 6)
    images, labels = read_cifar_records(SHARED / "cifar10" / "airplane_frog_train.bin.gz")
    assert labels[0] == 6


@needs_shared
@pytest.mark.parametrize("task, d, lo, hi", [("mnist", 784, 0.0, 1.0), ("fmnist", 784, 0.0, 1.0),
                                             ("cifar10", 3072, -1.0, 1.0)])
def test_tasks_on_the_real_files(task, d, lo, hi):
    s = load_task(task, n_tr=200, n_test=1000, seed=3, data_dir=SHARED, download=False)
    assert s.Xtr.shape == (200, d) and s.Xte.shape == (1000, d)
    assert s.Xval.shape == (200 // (5 if task == "cifar10" else 10), d)
    for X in (s.Xtr, s.Xval, s.Xte):
        assert X.min() >= lo and X.max() <= hi and X.min() < lo + 0.01 and X.max() > hi - 0.01
    for y in (s.ytr, s.yval, s.yte):
        assert set(np.unique(y)) == {0.0, 1.0} and y.sum() * 2 == y.size
    rows = np.concatenate(list(s.origin.values()))
    assert np.unique(rows).size == rows.size                    # disjoint
    assert s.box == (lo, hi)


def _copy(src, dst_dir, name=None):
    dst_dir.mkdir(parents=True, exist_ok=True)
    dst = dst_dir / (name or src.name)
    shutil.copyfile(src, dst)
    return dst


# -- corrupted and truncated copies ----------------------------------------------------------
@needs_shared
def test_truncated_and_corrupted_idx_files_name_the_file(tmp_path):
    src = SHARED / "mnist" / "t10k-labels-idx1-ubyte.gz"
    data = src.read_bytes()
    cut = tmp_path / "cut" / src.name
    cut.parent.mkdir()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut/t10k-labels-idx1-ubyte.gz.*truncated or corrupted"):
        read_idx(cut)
    raw = bytearray(gzip.decompress(data))
    raw[100] ^= 0xFF                                           # one flipped label byte
    bad = tmp_path / "t10k-labels-idx1-ubyte"
    bad.write_bytes(bytes(raw))
    sha = sources.DATASETS["mnist"]["files"]["test_labels"].sha256
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: checksum mismatch"):
        read_idx(bad, 0x801, sha)
    short = tmp_path / "short-idx1-ubyte"
    short.write_bytes(gzip.decompress(data)[:-5])
    with pytest.raises(DataError, match="IDX size mismatch"):
        read_idx(short, 0x801)
    with pytest.raises(DataError, match="bad IDX magic number: expected 0x00000803, got 0x00000801"):
        read_idx(src, 0x803)


def test_idx_and_cifar_parsers_reject_malformed_bytes(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02\x03")
    assert read_idx(p, 0x801).tolist() == [1, 2, 3]
    p.write_bytes(b"\x01\x00\x08\x01\x00\x00\x00\x03\x01\x02\x03")
    with pytest.raises(DataError, match="bad IDX magic"):
        read_idx(p)
    p.write_bytes(bytes(3073 * 2 - 1))
    with pytest.raises(DataError, match="x.bin: 6145 bytes is not a whole number of 3073-byte"):
        read_cifar_records(p)
    p.write_bytes(bytes([12]) + bytes(3072))
    with pytest.raises(DataError, match="label byte 12 outside 0..9"):
        read_cifar_records(p)
    with pytest.raises(DataError, match="file not found"):
        read_idx(tmp_path / "missing.gz")


@needs_shared
def test_cifar_pickle_batches_read_like_the_records(tmp_path):
    images, labels = read_cifar_records(SHARED / "cifar10" / "airplane_frog_test.bin.gz")
    p = tmp_path / "test_batch"
    p.write_bytes(pickle.dumps({b"data": images[:7], b"labels": labels[:7].tolist(),
                                b"batch_label": b"x"}))
    im2, lab2 = read_cifar_pickle(p)
    np.testing.assert_array_equal(im2, images[:7])
    np.testing.assert_array_equal(lab2, labels[:7])
    p.write_bytes(pickle.dumps({b"data": images[:7, :100], b"labels": [0] * 7}))
    with pytest.raises(DataError, match=r"expected data of shape \(N, 3072\)"):
        read_cifar_pickle(p)
    p.write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="not a CIFAR-10 python batch"):
        read_cifar_pickle(p)


# -- where files come from -------------------------------------------------------------------
def test_offline_without_files_says_what_to_place_where(tmp_path):
    with pytest.raises(DataError) as e:
        load_task("fmnist", data_dir=tmp_path, download=False)
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg and str(tmp_path / "fashion-mnist") in msg
    assert "hvpoison data fetch fashion-mnist" in msg
    with pytest.raises(DataError, match="data_dir: expected an existing directory"):
        load_task("mnist", data_dir=tmp_path / "nope", download=False)


def test_download_failure_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sources.DATASETS["mnist"], "urls", ("http://127.0.0.1:9/",))
    with pytest.raises(DataError, match=r"could not fetch train-images-idx3-ubyte.gz "
                                         r"\(cannot download http://127.0.0.1:9/"):
        sources.fetch("mnist")


@needs_shared
def test_fetch_verifies_and_fills_the_cache(monkeypatch, tmp_path):
    monkeypatch.setitem(sources.DATASETS["mnist"], "urls", ((SHARED / "mnist").as_uri() + "/",))
    paths = sources.fetch("mnist")
    assert all(Path(p).parent == tmp_path / "cache" / "mnist" for p in paths.values())
    s = load_task("mnist", n_tr=100, n_test=100, download=False)     # found in the cache
    ref = load_task("mnist", n_tr=100, n_test=100, data_dir=SHARED, download=False)
    np.testing.assert_array_equal(s.Xtr, ref.Xtr)
    assert all(v[1] == "ok" for v in sources.check("mnist").values())
    # a corrupted source is refused, and nothing lands in the cache
    bad = tmp_path / "bad"
    _copy(SHARED / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz", bad, "t10k-labels-idx1-ubyte.gz")
    for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
        _copy(SHARED / "mnist" / f, bad)          # wrong dataset: checksums differ
    monkeypatch.setitem(sources.DATASETS["fashion-mnist"], "urls", (bad.as_uri() + "/",))
    with pytest.raises(DataError, match="checksum mismatch"):
        sources.fetch("fashion-mnist")
    assert not (tmp_path / "cache" / "fashion-mnist" / "train-images-idx3-ubyte.gz").exists()


@needs_shared
def test_cifar_fetch_builds_the_subset_from_the_official_tarball_layout(monkeypatch, tmp_path):
    """A tarball in the official layout (batches of 3073-byte records, all ten classes
    interleaved) is filtered to airplane/frog and must reproduce the verified subset."""
    tr = gzip.decompress((SHARED / "cifar10" / "airplane_frog_train.bin.gz").read_bytes())
    te = gzip.decompress((SHARED / "cifar10" / "airplane_frog_test.bin.gz").read_bytes())
    rec = 3073

    def with_other_classes(blob):
        out = bytearray()
        for i in range(0, len(blob), rec):
            out += blob[i:i + rec] + bytes([3]) + bytes(3072)      # a 'cat' between each
        return bytes(out)

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        chunks = np.array_split(np.arange(len(tr) // rec), 5)
        parts = [(f"cifar-10-batches-bin/data_batch_{i + 1}.bin",
                  with_other_classes(tr[c[0] * rec:(c[-1] + 1) * rec])) for i, c in enumerate(chunks)]
        parts.append(("cifar-10-batches-bin/test_batch.bin", with_other_classes(te)))
        for name, data in parts:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tgz = tmp_path / "cifar-10-binary.tar.gz"
    tgz.write_bytes(buf.getvalue())
    monkeypatch.setattr(sources, "CIFAR_TARBALL", (tgz.as_uri(), hashlib.md5(buf.getvalue()).hexdigest()))
    paths = sources.fetch("cifar10")
    assert gzip.decompress(paths["train"].read_bytes()) == tr
    monkeypatch.setattr(sources, "CIFAR_TARBALL", (tgz.as_uri(), "0" * 32))
    with pytest.raises(DataError, match="checksum mismatch: expected md5 0000"):
        sources.fetch_cifar10(force=True)


# -- splits, embedded subset, synthetic --------------------------------------------------------
def test_embedded_split_is_balanced_disjoint_and_reproducible():
    a = load_task("mnist-mini", n_tr=300, n_val=50, n_test=1000, seed=7)
    b = load_task("mnist-mini", n_tr=300, n_val=50, n_test=1000, seed=7)
    c = load_task("mnist-mini", n_tr=300, n_val=50, n_test=1000, seed=8)
    for k in ("Xtr", "ytr", "Xval", "yval", "Xte", "yte"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert not np.array_equal(a.Xtr, c.Xtr)
    assert a.ytr.sum() == 150 and a.yval.sum() == 25 and a.yte.sum() == 500
    rows = np.concatenate(list(a.origin.values()))
    assert np.unique(rows).size == rows.size == 1350
    assert a.Xtr.dtype == np.float64 and 0 <= a.Xtr.min() and a.Xtr.max() <= 1
    assert load_task("mnist-mini", n_tr=101, n_test=1000).ytr.sum() == 50   # odd: class 0 +1
    with pytest.raises(ValueError, match=r"n_tr \+ n_val \+ n_test: expected at most 3200 rows"):
        load_task("mnist-mini", n_tr=3000, n_test=1000)
    with pytest.raises(ValueError, match="task: expected one of"):
        load_task("mnist-0v1")


def test_embedded_subset_is_small():
    p = Path(tasks.__file__).parent / tasks.EMBEDDED
    assert p.stat().st_size < 1_000_000


@needs_shared
def test_embedded_subset_is_real_mnist():
    """Rebuilt from the original files, it is identical, and every row equals the original
    MNIST row its ``origin`` names."""
    with np.load(io.BytesIO(embedded.build(SHARED))) as z, \
            np.load(Path(tasks.__file__).parent / tasks.EMBEDDED) as e:
        for k in ("images", "labels", "origin"):
            np.testing.assert_array_equal(z[k], e[k])
        train = read_idx(SHARED / "mnist" / "train-images-idx3-ubyte.gz").reshape(60000, -1)
        test = read_idx(SHARED / "mnist" / "t10k-images-idx3-ubyte.gz").reshape(10000, -1)
        lab = np.concatenate([read_idx(SHARED / "mnist" / "train-labels-idx1-ubyte.gz"),
                              read_idx(SHARED / "mnist" / "t10k-labels-idx1-ubyte.gz")])
        full = np.concatenate([train, test])
        np.testing.assert_array_equal(full[e["origin"]], e["images"])
        np.testing.assert_array_equal(lab[e["origin"]], np.where(e["labels"] == 1, 8, 0))


def test_synthetic2d_is_balanced_and_seeded():
    a, b = load_task("synthetic2d", n_tr=32, seed=1), load_task("synthetic2d", n_tr=32, seed=1)
    np.testing.assert_array_equal(a.Xtr, b.Xtr)
    assert a.Xtr.shape == (32, 2) and a.Xval.shape == (32, 2) and a.ytr.sum() == 16
    assert a.Xte[a.yte == 1].mean() > 0.5 > -0.5 > a.Xte[a.yte == 0].mean()


@needs_shared
@pytest.mark.parametrize("kind", ["bin", "py"])
def test_cifar_task_reads_the_original_batches(tmp_path, kind):
    """With only the original batches (binary or python) in the data directory, the task
    is the same as from the subset files (same records, same order)."""
    tr, ltr = read_cifar_records(SHARED / "cifar10" / "airplane_frog_train.bin.gz")
    te, lte = read_cifar_records(SHARED / "cifar10" / "airplane_frog_test.bin.gz")
    d = tmp_path / "data" / f"cifar-10-batches-{kind}"
    d.mkdir(parents=True)
    chunks = np.array_split(np.arange(len(tr)), 5)
    for name, (im, lab) in [(f"data_batch_{i + 1}", (tr[c], ltr[c])) for i, c in enumerate(chunks)] \
            + [("test_batch", (te, lte))]:
        if kind == "bin":
            (d / f"{name}.bin").write_bytes(np.concatenate([lab[:, None], im], 1).tobytes())
        else:
            (d / name).write_bytes(pickle.dumps({b"data": im, b"labels": lab.tolist()}))
    a = load_task("cifar10", n_tr=100, n_test=1000, seed=2, data_dir=tmp_path / "data",
                  download=False)
    b = load_task("cifar10", n_tr=100, n_test=1000, seed=2, data_dir=SHARED, download=False)
    np.testing.assert_array_equal(a.Xtr, b.Xtr)
    np.testing.assert_array_equal(a.yte, b.yte)
