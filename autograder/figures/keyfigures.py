"""The course's key figures, drawn from NumPy and PyTorch alone (never from a student's answer), so that they can
be rendered once and embedded in the notebooks' markdown for static viewers (see :mod:`.attach`).

Each function returns a matplotlib figure and shows nothing.
"""
from __future__ import annotations

import numpy as np

from .grids import draw_matrix
from .im2col import draw_im2col
from .windows import draw_windows


def sliding_window():
    """01: the first two steps of cross-correlation of a 3x3 input with a 2x2 kernel (the example of d2l 7.2)."""
    import matplotlib.pyplot as plt

    x, k = np.arange(9.0).reshape(3, 3), np.array([[0.0, 1.0], [2.0, 3.0]])
    y = np.array([[(x[i:i + 2, j:j + 2] * k).sum() for j in range(2)] for i in range(2)])
    fig, axes = plt.subplots(2, 3, figsize=(10, 7))
    for row, (i, j) in enumerate([(0, 0), (0, 1)]):
        terms = " + ".join(f"{x[i + a, j + b]:g}·{k[a, b]:g}" for a in range(2) for b in range(2))
        blank = np.ones((2, 2), bool)
        blank.flat[: row + 1] = False
        draw_matrix(axes[row, 0], x, f"input x, window at ({i}, {j})", box=(i, j, 2, 2))
        draw_matrix(axes[row, 1], k, "kernel k", box=(0, 0, 2, 2), canvas=(3, 3))
        draw_matrix(axes[row, 2], y, f"output y, entry ({i}, {j})", box=(i, j, 1, 1), blank=blank, canvas=(3, 3))
        axes[row, 1].text(1, 2.75, f"y[{i}, {j}] = {terms} = {y[i, j]:g}", ha="center", va="center", fontsize=13)
    fig.suptitle("cross-correlation: slide the window, multiply element-wise, add up", fontsize=14)
    return fig


def valid_size(h: int = 5, w: int = 7, kh: int = 2, kw: int = 3):
    """01: every place the window's top-left corner can sit (shaded) and the last window (outlined)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, ax = plt.subplots(figsize=(6, 4.4))
    draw_matrix(ax, np.zeros((h, w)), f"x: {h} x {w}, k: {kh} x {kw}  ->  y: {h - kh + 1} x {w - kw + 1}",
                box=(0, 0, h - kh + 1, w - kw + 1), blank=np.ones((h, w), bool))
    ax.add_patch(Rectangle((w - kw, h - kh), kw, kh, facecolor="none", edgecolor="tab:blue", lw=4))
    ax.text(w - kw / 2, h - kh / 2, "last\nwindow", ha="center", va="center", color="tab:blue", fontsize=12)
    return fig


def im2col():
    """02: two 3x3 channels, a 2x2 kernel: each window outlined in the colour of its im2col column."""
    return draw_im2col(np.arange(18.0).reshape(2, 3, 3), 2, 2)


def _window_panels(settings, height: float):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(settings), figsize=(3.7 * len(settings) + 0.5, height))
    for ax, kw in zip(axes, settings):
        draw_windows(ax, **kw)
    fig.tight_layout()
    return fig


def conv_windows():
    """03: the windows of three convolutions (valid; padding and stride; a stride that skips the last cell)."""
    return _window_panels([dict(n=7, k=3), dict(n=7, k=3, s=2, p=1), dict(n=8, k=3, s=2)], 4.2)


def ceil_windows():
    """03: pooling windows in floor and ceil mode, with the windows PyTorch drops."""
    return _window_panels([dict(n=7, k=2, s=2), dict(n=7, k=2, s=2, ceil_mode=True),
                           dict(n=5, k=2, s=2, p=1, ceil_mode=True), dict(n=8, k=3, s=3, p=1, ceil_mode=True)], 3.6)


def backprop_by_hand():
    """04: forward pass and the three gradients of a 3x3 input, 2x2 kernel, computed with loops."""
    import matplotlib.pyplot as plt

    x = np.array([[1.0, 2, 0], [0, 1, 3], [2, 1, 1]])
    w = np.array([[1.0, -1], [2, 0]])
    dout = np.array([[1.0, 2], [-1, 1]])
    y = np.array([[np.sum(x[i:i + 2, j:j + 2] * w) for j in range(2)] for i in range(2)])
    dw = np.array([[np.sum(x[a:a + 2, c:c + 2] * dout) for c in range(2)] for a in range(2)])
    dout_full = np.pad(dout, 1)
    dx = np.array([[np.sum(dout_full[r:r + 2, c:c + 2] * w[::-1, ::-1]) for c in range(3)] for r in range(3)])
    fig, axes = plt.subplots(2, 4, figsize=(13, 6.5))
    for ax, m, title in [(axes[0, 0], x, "input x"), (axes[0, 1], w, "kernel w"),
                         (axes[0, 2], y, "y = x ⋆ w  (forward)"), (axes[1, 0], dout, "dout = dL/dy (given)"),
                         (axes[1, 1], dw, "dw = x ⋆ dout"), (axes[1, 3], dx, "dx = border(dout) ⋆ flip(w)")]:
        draw_matrix(ax, m, title)
    draw_matrix(axes[1, 2], dout_full, "dout with a zero border", mark=np.pad(np.ones((2, 2), bool), 1))
    axes[0, 3].axis("off")
    fig.suptitle(f"db = sum(dout) = {dout.sum():g}", y=0.04)
    return fig


def overlap_pair(n: int = 6):
    """05: stamps per output pixel of a transposed convolution (ones through a ones kernel), uneven (k=3, s=2)
    and even (k=4, s=2), with colour bars; computed by PyTorch."""
    import matplotlib.pyplot as plt
    import torch

    fig, axes = plt.subplots(1, 2, figsize=(9.5, 4.2))
    for ax, (k, s) in zip(axes, [(3, 2), (4, 2)]):
        counts = torch.nn.functional.conv_transpose2d(torch.ones(1, 1, n, n), torch.ones(1, 1, k, k),
                                                      stride=s)[0, 0].int().numpy()
        image = ax.imshow(counts, cmap="viridis", vmin=0)
        fig.colorbar(image, ax=ax, shrink=0.8, label="stamps per pixel", ticks=range(int(counts.max()) + 1))
        ax.set_title(f"{n} x {n} input, k={k}, stride={s}")
        ax.axis("off")
    fig.tight_layout()
    return fig


def batchnorm_modes():
    """06: BatchNorm in eval mode is one fixed line per channel; in train mode the line moves with the batch."""
    import copy

    import matplotlib.pyplot as plt
    import torch
    from torch import nn

    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        bn.running_var.copy_(torch.tensor([0.25, 4.0, 1.0]))
        bn.weight.copy_(torch.tensor([1.5, 0.5, -1.0]))
        bn.bias.copy_(torch.tensor([0.0, 1.0, 0.5]))
        image = torch.randn(1, 3, 6, 6) + 1
        batch_a = torch.cat([image, torch.randn(7, 3, 6, 6)])
        batch_b = torch.cat([image, 3 * torch.randn(7, 3, 6, 6) - 2])
        eval_a = bn.eval()(batch_a)[0]
        train_bn = copy.deepcopy(bn).train()
        train_a, train_b = train_bn(batch_a)[0], train_bn(batch_b)[0]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True, sharey=True)
    for c, colour in enumerate(["tab:blue", "tab:orange", "tab:green"]):
        xs = image[0, c].flatten()
        axes[0].scatter(xs, eval_a[c].flatten(), s=14, color=colour, label=f"channel {c}")
        axes[1].scatter(xs, train_a[c].flatten(), s=14, color=colour, marker="o")
        axes[1].scatter(xs, train_b[c].flatten(), s=22, color=colour, marker="x")
    axes[0].set_title("eval mode: one fixed line per channel")
    axes[1].set_title("train mode: the line moves with the batch (o: A, x: B)")
    axes[0].legend()
    for ax in axes:
        ax.set_xlabel("input value x")
        ax.axhline(0, color="grey", lw=0.5)
    axes[0].set_ylabel("BatchNorm output y")
    return fig
