"""How the embedded MNIST subset (``mnist08_mini.npz``, shipped in the package) was made.

1600 images of each class of MNIST '0' vs '8', drawn without replacement (seed 20261125) from
the joint pool of the original training and test files, stored as uint8 with their labels
(0 for '0', 1 for '8') and ``origin``, the row's index in train (0..59999) followed by
test (60000..69999). ``tests/test_data.py`` rebuilds it from the original files and checks it
is identical, so the subset is real MNIST, not a copy of unknown provenance.
"""
from __future__ import annotations

import io

import numpy as np

PER_CLASS = 1600
SEED = 20261125


def build(data_dir=None, download=False) -> bytes:
    """The bytes of ``mnist08_mini.npz``, rebuilt from the original MNIST files."""
    from .tasks import class_pool

    images, labels, origin = class_pool("mnist", (0, 8),
                                        None if data_dir is None else str(data_dir),
                                        download)
    rng = np.random.default_rng(SEED)
    sel = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:PER_CLASS]
                                  for c in (0, 1)]))
    buf = io.BytesIO()
    np.savez_compressed(buf, images=images[sel], labels=labels[sel].astype(np.uint8),
                        origin=origin[sel].astype(np.int32))
    return buf.getvalue()


if __name__ == "__main__":  # python -m hvpoison.data.embedded DATA_DIR OUT
    import sys

    open(sys.argv[2], "wb").write(build(sys.argv[1]))
