"""Timing helpers and the machine/version header every benchmark records (they live in
:mod:`hvpoison.benchmarks`, so ``hvpoison bench`` and these scripts share them)."""
from hvpoison.benchmarks import header, median_time  # noqa: F401
