"""Hypergradients: implicit (Eq. 4)."""
from .implicit import implicit_hypergrad, solve_hvp, train_stationary
from .result import ConvergenceWarning, Hypergrad

__all__ = ["implicit_hypergrad", "solve_hvp", "train_stationary", "ConvergenceWarning",
           "Hypergrad"]
