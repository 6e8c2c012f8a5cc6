"""Models with one derivative contract (see :mod:`hvpoison.models.base`)."""
from .base import Model
from .lr import LR
from .mlp import MLP

__all__ = ["Model", "LR", "MLP"]
