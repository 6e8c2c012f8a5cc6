"""Datasets: readers for the original formats, where files come from, the binary tasks of
Sect. V with balanced seeded splits, the embedded MNIST subset and the 2-D task of Fig. 1.
Knows nothing of models."""
from .formats import DataError, read_cifar_pickle, read_cifar_records, read_idx
from .sources import cache_dir, check, fetch, locate
from .tasks import TASKS, Split, load_task, synthetic2d

__all__ = ["DataError", "read_idx", "read_cifar_records", "read_cifar_pickle", "cache_dir",
           "check", "fetch", "locate", "TASKS", "Split", "load_task", "synthetic2d"]
