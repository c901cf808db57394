"""Test functions ``f`` for the ``numeric_gradient`` exercise (04-backprop): plain, self-contained NumPy.

``numeric_gradient(f, x, dout, h)`` receives one of these functions as its first argument. This module imports
nothing but NumPy, so the isolated grader can copy it into its sandbox and pass the functions by name (the
sandbox cannot import the rest of the autograder); the torch twins used by the oracle live in
``autograder/exercises/a04_backprop.py``, keyed by function name.

Every function maps a float64 array ``x`` of shape ``(H, W)`` to a float64 array and **mixes entries** (no
function is elementwise), so that an answer perturbing several entries at once, ignoring ``dout``, or dividing
by ``h`` instead of ``2h`` gets a visibly wrong gradient. :data:`PROBES` lists them with their smallest
admissible input and their output shape.
"""
from __future__ import annotations

import numpy as np

#: the fixed kernel of :func:`tanh_conv3x3`
KERNEL3 = np.array([[0.50, -1.00, 0.25],
                    [1.50, 0.75, -0.50],
                    [-0.25, 1.00, 0.50]])


def tanh_conv3x3(x):
    """tanh of the valid 3x3 cross-correlation of ``x`` with :data:`KERNEL3`: ``(H, W) -> (H-2, W-2)``."""
    h, w = x.shape[0] - 2, x.shape[1] - 2
    out = np.zeros((h, w))
    for a in range(3):
        for b in range(3):
            out = out + KERNEL3[a, b] * x[a:a + h, b:b + w]
    return np.tanh(out)


def neighbour_products(x):
    """Products of right and lower neighbours: ``x[i, j] * x[i, j+1] + sin(x[i, j]) * x[i+1, j]``,
    ``(H, W) -> (H-1, W-1)``."""
    return x[:-1, :-1] * x[:-1, 1:] + np.sin(x[:-1, :-1]) * x[1:, :-1]


def softmax_rows(x):
    """Softmax along each row: ``(H, W) -> (H, W)``; every output entry depends on its whole row."""
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def gram(x):
    """The Gram matrix of the rows, ``x @ x.T``: ``(H, W) -> (H, H)``."""
    return x @ x.T


def normalize(x):
    """``x / sqrt(1 + sum(x**2))``: ``(H, W) -> (H, W)``; every output entry depends on every input entry."""
    return x / np.sqrt(1.0 + np.sum(x * x))


def _same(h, w):
    return (h, w)


#: (function, smallest H, smallest W, output shape as a function of (H, W)), in case-parameter order
PROBES = (
    (tanh_conv3x3, 3, 3, lambda h, w: (h - 2, w - 2)),
    (neighbour_products, 2, 2, lambda h, w: (h - 1, w - 1)),
    (softmax_rows, 1, 2, _same),
    (gram, 1, 1, lambda h, w: (h, h)),
    (normalize, 1, 1, _same),
)

__all__ = ["tanh_conv3x3", "neighbour_products", "softmax_rows", "gram", "normalize", "PROBES", "KERNEL3"]
