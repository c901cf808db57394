"""Lazy access to torch for exercise oracles (importing torch costs ~1.3 s; specs load without it)."""
from __future__ import annotations


def torch():
    import torch as _torch

    return _torch


def F():  # noqa: N802 - mirrors `torch.nn.functional as F`
    import torch.nn.functional as _F

    return _F
