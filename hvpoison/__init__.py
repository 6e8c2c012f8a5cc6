"""hvpoison: optimal poisoning attacks that anticipate hyperparameter learning.

The engine (models, penalties, objective, hypergradients) needs numpy and scipy only;
cupy is used when given cupy arrays or ``device="gpu"``.
"""
from .backend import get_array_module
from .hypergrad import ConvergenceWarning, DivergenceError, Hypergrad, fmd, \
    implicit_hypergrad, rmd, solve_hvp, train_stationary, unroll
from .attack import Batch, attack
from .evaluate import error, evaluate, kuncheva, lam_cv, train, weight_norms
from .models import LR, MLP
from .objective import Objective, Point, Prepared
from . import methods, stepsize, victims
from .victims import GD, Exact

__version__ = "0.1.0.dev0"

__all__ = ["LR", "MLP", "Objective", "Point", "Prepared", "implicit_hypergrad", "solve_hvp",
           "train_stationary", "rmd", "fmd", "unroll", "attack", "Batch", "train",
           "evaluate", "error", "weight_norms", "kuncheva", "lam_cv", "Hypergrad",
           "ConvergenceWarning", "DivergenceError", "get_array_module", "GD", "Exact"]
