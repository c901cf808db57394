"""The shared pieces of the convolution exercises: output sizes, the case builder with its description, the ways a
call passes optional arguments, and the parameter sets most exercises draw from.

Case parameters use the same keys everywhere (see :mod:`autograder.params`): ``N`` (batch), ``C_in``/``C_out``
channels, or ``G`` groups of ``cg_in``/``cg_out`` channels each, ``H``/``W`` the image, ``kH``/``kW`` the kernel,
``bias`` 0/1 (absent: no bias argument at all).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .params import Param, flag
from .spec import Call

Params = Mapping[str, int]


# --------------------------------------------------------------------------------------------------------------
# output sizes
# --------------------------------------------------------------------------------------------------------------
def conv_out(n: int, k: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Rows (or columns) of a convolution's output: ``floor((n + 2p - d(k-1) - 1) / s) + 1`` (PyTorch's rule)."""
    return (n + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def transposed_out(n: int, k: int, s: int = 1, p: int = 0, op: int = 0, d: int = 1) -> int:
    """Rows (or columns) of a transposed convolution's output: ``(n-1)s - 2p + d(k-1) + output_padding + 1``.

    Known limitation: the student wheel carries the exercise specs, so the size rules of 03 and 05 reach students
    in closed form (as PyTorch's documentation states them); the edition test catches verbatim solution code only.
    """
    return (n - 1) * s - 2 * p + d * (k - 1) + op + 1


def kernel_fits(p: Params, padding: str | None = None) -> bool:
    """Whether the kernel ``kH x kW`` fits in the image ``H x W`` (padded by ``p[padding]`` on each side)."""
    pad = p[padding] if padding else 0
    return 1 <= p["kH"] <= p["H"] + 2 * pad and 1 <= p["kW"] <= p["W"] + 2 * pad


def pair(value) -> tuple:
    """An "int or pair" argument as a pair: ``s`` means ``(s, s)``."""
    return (value, value) if isinstance(value, (int, np.integer)) else tuple(value)


def channels(p: Params) -> tuple[int, int]:
    """``(C_in, C_out)``: given directly, or as ``G`` groups of ``cg_in`` / ``cg_out`` channels."""
    if "G" in p:
        return p["G"] * p["cg_in"], p["G"] * p["cg_out"]
    return p["C_in"], p["C_out"]


# --------------------------------------------------------------------------------------------------------------
# how a call passes its optional arguments
# --------------------------------------------------------------------------------------------------------------
def call_form(args: tuple, optional: Sequence[tuple[str, Any, Any]], form: int) -> Call:
    """A call of ``args`` and the ``optional`` ``(name, value, default)`` arguments, in one of three forms:
    0 passes only the values that differ from their defaults, as keywords (an array always counts as given);
    1 every optional argument as a keyword; 2 every argument positionally. Answers must accept all three."""
    if form == 2:
        return Call(tuple(args) + tuple(v for _, v, _ in optional))
    return Call(tuple(args), {k: v for k, v, d in optional
                              if form == 1 or isinstance(v, np.ndarray) or v != d})


# --------------------------------------------------------------------------------------------------------------
# the convolution case: arrays and their description
# --------------------------------------------------------------------------------------------------------------
def shape_text(*dims: int) -> str:
    """``(2, 3)``, and ``(4,)`` for one dimension: a shape as NumPy prints it."""
    return "(" + ", ".join(str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"


@dataclass(frozen=True)
class ConvCase:
    """The arrays of a convolution case: ``x``, ``w`` and the bias (``bias`` channels, or ``None``)."""

    x: tuple
    w: tuple
    bias: int | None = None

    def arrays(self, draw) -> tuple:
        """``(x, w, b)`` drawn in this order (``b`` is ``None`` without a bias)."""
        x, w = draw.array(*self.x), draw.array(*self.w)
        return x, w, (draw.array(self.bias) if self.bias is not None else None)

    def text(self, no_bias: str = "b None") -> str:
        """``x (N, C, H, W), w (...), b (C_out,)``, or ``no_bias`` in place of the bias."""
        bias = f"b {shape_text(self.bias)}" if self.bias is not None else no_bias
        return f"x {shape_text(*self.x)}, w {shape_text(*self.w)}, {bias}"


def conv_case(p: Params, transposed: bool = False) -> ConvCase:
    """The case of the standard keys: ``x (N, C_in, H, W)`` (no ``N`` key: ``(C_in, H, W)``), weights
    ``(C_out, C_in / groups, kH, kW)`` (``transposed``: ``(C_in, C_out / groups, kH, kW)``), bias when
    ``p["bias"]``."""
    c_in, c_out = channels(p)
    groups = p.get("G", 1)
    lead = (p["N"],) if "N" in p else ()
    w = (c_in, c_out // groups) if transposed else (c_out, c_in // groups)
    return ConvCase(lead + (c_in, p["H"], p["W"]), w + (p["kH"], p["kW"]), c_out if p.get("bias") else None)


# --------------------------------------------------------------------------------------------------------------
# parameter sets
# --------------------------------------------------------------------------------------------------------------
def image_kernel(image: int, kernel: int | None = None, low: int = 1) -> list[Param]:
    """``H``, ``W`` in ``low..image`` and a kernel ``kH``, ``kW`` that fits (at most ``kernel`` when given)."""
    def fits(axis):
        return (lambda p: p[axis]) if kernel is None else (lambda p: min(p[axis], kernel))
    return [Param("H", low, image), Param("W", low, image), Param("kH", 1, fits("H")), Param("kW", 1, fits("W"))]


def conv_params(channels: int, image: int, kernel: int | None = None, batch: int | None = None,
                bias: float | None = 0.8) -> list[Param]:
    """The parameters of a convolution case: ``N`` in ``1..batch`` (when given), ``C_in``/``C_out`` in
    ``1..channels``, the image and a fitting kernel (:func:`image_kernel`), ``bias`` present with probability
    ``bias`` (``None``: no bias parameter)."""
    lead = [Param("N", 1, batch)] if batch else []
    tail = [flag("bias", bias)] if bias is not None else []
    return lead + [Param("C_in", 1, channels), Param("C_out", 1, channels)] + image_kernel(image, kernel) + tail
