"""hvpoison: optimal poisoning attacks that anticipate hyperparameter learning.

The engine (models, penalties, objective, hypergradients) needs numpy and scipy only;
cupy is used when given cupy arrays or ``device="gpu"``.
"""
from .backend import get_array_module
from .hypergrad import ConvergenceWarning, Hypergrad, implicit_hypergrad, solve_hvp, \
    train_stationary
from .models import LR, MLP
from .objective import Objective, Point

__version__ = "0.1.0.dev0"

__all__ = ["LR", "MLP", "Objective", "Point", "implicit_hypergrad", "solve_hvp",
           "train_stationary", "Hypergrad", "ConvergenceWarning", "get_array_module"]
