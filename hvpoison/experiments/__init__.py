"""Experiments: a declarative configuration, a resumable runner (serial, local processes or
Dask), the results store and the aggregates. This is where data meets the engine."""
from .config import SETTINGS, Experiment
from .runner import run
from .store import Store
from .summary import aggregate, format_table, summarize

__all__ = ["Experiment", "SETTINGS", "run", "Store", "aggregate", "summarize", "format_table"]
