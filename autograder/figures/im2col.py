"""The im2col matrix of one small image beside the windows it is made of: each window is outlined on the input
channels in the colour of its column."""
from __future__ import annotations

import numpy as np

from .grids import draw_matrix

COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive")


def _outline_window(ax, i: int, j: int, kh: int, kw: int, color: str, inset: float) -> None:
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((j + inset, i + inset), kw - 2 * inset, kh - 2 * inset, facecolor="none",
                           edgecolor=color, lw=2.5))


def im2col_matrix(x: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """The im2col matrix of one image ``x`` (C, H, W): row (c, a, e), column p = i * W' + j, entry by entry."""
    c, h, w = x.shape
    ho, wo = h - kh + 1, w - kw + 1
    return np.array([[x[ch, i + a, j + e] for i in range(ho) for j in range(wo)]
                     for ch in range(c) for a in range(kh) for e in range(kw)])


def draw_im2col(x: np.ndarray, kh: int, kw: int):
    """Figure: every channel of the small image ``x`` (C, H, W) with each window outlined in its own colour, and
    the im2col matrix whose column p, written in the same colour, is window p flattened. Returns the figure."""
    import matplotlib.pyplot as plt

    c, h, w = x.shape
    ho, wo = h - kh + 1, w - kw + 1
    cols = im2col_matrix(x, kh, kw)
    colors = [COLORS[p % len(COLORS)] for p in range(ho * wo)]
    fig, axes = plt.subplots(1, c + 1, figsize=(3.6 * c + 0.6 * cols.shape[1] + 2, 4.4),
                             gridspec_kw={"width_ratios": [w] * c + [cols.shape[1]]})
    for ch in range(c):
        draw_matrix(axes[ch], x[ch], f"x[0, {ch}] (channel {ch})", fontsize=11)
        for p in range(ho * wo):
            _outline_window(axes[ch], p // wo, p % wo, kh, kw, colors[p], 0.06 + 0.07 * p)
    draw_matrix(axes[c], cols, f"im2col matrix {cols.shape}: column p = window p", fontsize=11)
    for p, color in enumerate(colors):
        for r in range(cols.shape[0]):
            axes[c].texts[r * cols.shape[1] + p].set_color(color)
        axes[c].text(p + 0.5, -0.35, f"p={p}", ha="center", va="bottom", color=color, fontsize=10)
    axes[c].set_title(axes[c].get_title(), pad=22)
    fig.tight_layout()
    return fig
