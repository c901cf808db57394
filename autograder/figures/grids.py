"""Small arrays drawn as grids of numbered cells, galleries of feature maps, and image shrinking."""
from __future__ import annotations

import numpy as np


def shrink(img: np.ndarray, f: int = 2) -> np.ndarray:
    """Downsample an (H, W) or (H, W, C) image by an integer factor ``f``, averaging f x f blocks."""
    h, w = (img.shape[0] // f) * f, (img.shape[1] // f) * f
    img = img[:h, :w]
    return img.reshape(h // f, f, w // f, f, *img.shape[2:]).mean(axis=(1, 3))


def _cell_face(value: float, shade: bool, marked: bool, color: str) -> tuple[str, float]:
    if marked:
        return color, 0.5
    return (str(float(np.clip(value, 0, 1))) if shade else "white"), 1.0


def draw_matrix(ax, m: np.ndarray, title: str = "", box=None, color: str = "tab:orange", fmt: str = "{:g}",
                shade: bool = False, blank=None, canvas=None, mark=None, fontsize: int = 12) -> None:
    """Draw the 2-D array ``m`` as a grid of numbered cells on the matplotlib axes ``ax``.

    ``box = (row, col, height, width)`` outlines and tints a rectangle of cells; ``mark`` (boolean mask) tints
    single cells; ``shade=True`` paints each cell with its value as a grey level; ``blank`` (boolean mask) leaves
    cells without a number; ``canvas = (rows, cols)`` centres ``m`` on a larger empty area, so that matrices of
    different sizes are drawn with cells of the same size.
    """
    from matplotlib.patches import Rectangle

    h, w = m.shape
    for (i, j), value in np.ndenumerate(m):
        face, alpha = _cell_face(value, shade, mark is not None and bool(mark[i, j]), color)
        ax.add_patch(Rectangle((j, i), 1, 1, facecolor=face, alpha=alpha, edgecolor="black", lw=1))
        if blank is None or not blank[i, j]:
            ink = ("black" if value > 0.5 else "white") if shade else "black"
            ax.text(j + 0.5, i + 0.5, fmt.format(value), ha="center", va="center", color=ink, fontsize=fontsize)
    if box is not None:
        r, c, bh, bw = box
        ax.add_patch(Rectangle((c, r), bw, bh, facecolor=color, alpha=0.35, edgecolor=color, lw=3))
    ch, cw = canvas or (h, w)
    ax.set_xlim(-0.1 - (cw - w) / 2, w + 0.1 + (cw - w) / 2)
    ax.set_ylim(h + 0.1 + (ch - h) / 2, -0.1 - (ch - h) / 2)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title)


def show_maps(maps, titles, cols: int = 4, size: float = 2.6, cmap: str = "gray", symmetric: bool = False):
    """Draw 2-D arrays (feature maps) or (H, W, 3) colour images in a grid and show the figure;
    ``symmetric=True`` centres the colour scale on 0 (red positive, blue negative)."""
    import matplotlib.pyplot as plt

    rows = -(-len(maps) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * size), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, m, t in zip(axes.flat, maps, titles):
        if m.ndim == 3:
            ax.imshow(np.clip(m, 0, 1))
        elif symmetric:
            lim = np.percentile(np.abs(m), 99) + 1e-12
            ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim)
        else:
            ax.imshow(m, cmap=cmap)
        ax.set_title(t, fontsize=10)
    plt.tight_layout()
    plt.show()
    return fig
