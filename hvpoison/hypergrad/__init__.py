"""Hypergradients: implicit (Eq. 4), RMD (Alg. 1) and FMD through T steps of Eq. 6."""
from .fmd import fmd
from .implicit import dense_hessian, eq4, implicit_hypergrad, solve_hvp, train_stationary
from .result import ConvergenceWarning, DivergenceError, Hypergrad
from .rmd import rmd, unroll, unroll_many

__all__ = ["implicit_hypergrad", "eq4", "solve_hvp", "dense_hessian", "train_stationary", "rmd",
           "fmd", "unroll", "unroll_many", "ConvergenceWarning", "DivergenceError", "Hypergrad"]
