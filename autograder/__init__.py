"""convlab's autograder: checks convolution exercises against PyTorch, explains failures, grades in isolation.

Students use :func:`check` in notebooks; instructors and CI use ``python -m autograder``.
"""
from .check import check

__all__ = ["check"]
__version__ = "0.1.0"
