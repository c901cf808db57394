"""The windows of a convolution or pooling layer along one axis, drawn over the padded input.

The number of windows is PyTorch's own (the output length of ``F.conv1d`` or ``F.max_pool1d`` on a zero input):
the figure shows what the layer does without spelling out a formula that an exercise asks for.
"""
from __future__ import annotations


def torch_window_count(n: int, k: int, s: int = 1, p: int = 0, d: int = 1, ceil_mode: bool = False) -> int:
    """Output length of a pooling (ceil_mode) or convolution layer along one axis, as PyTorch computes it; 0 where
    PyTorch raises."""
    import torch
    import torch.nn.functional as F

    x = torch.zeros(1, 1, n)
    try:
        if ceil_mode:
            return int(F.max_pool1d(x, k, s, p, d, ceil_mode=True).shape[-1])
        return int(F.conv1d(F.pad(x, (p, p)), torch.zeros(1, 1, k), stride=s, dilation=d).shape[-1])
    except RuntimeError:
        return 0


def window_starts(n: int, k: int, s: int = 1, p: int = 0, d: int = 1, ceil_mode: bool = False) -> list[int]:
    """Starts (in input coordinates; padding is negative) of the windows PyTorch uses; [] where it raises."""
    return [-p + i * s for i in range(torch_window_count(n, k, s, p, d, ceil_mode))]


def _candidate_starts(n: int, k: int, s: int, p: int, d: int) -> list[int]:
    """Every start whose window still reads at least one input or padding cell beyond the previous window's end:
    what rounding up would keep before PyTorch's last-window rule."""
    end, starts, start = n + p, [], -p
    while start < end and (not starts or starts[-1] + d * (k - 1) + 1 < end):
        starts.append(start)
        start += s
    return starts


def _draw_window(ax, taps, y, color, dashed=False):
    from matplotlib.patches import Rectangle

    if dashed:
        for t in taps:
            ax.add_patch(Rectangle((t, y), 1, 1, facecolor="none", edgecolor="grey", ls="--"))
        ax.text(taps[-1] + 1.3, y + 0.5, "dropped", va="center", color="grey", fontsize=10)
        return
    ax.plot([taps[0] + 0.5, taps[-1] + 0.5], [y + 0.5, y + 0.5], color=color, lw=1)
    for t in taps:
        ax.add_patch(Rectangle((t, y), 1, 1, facecolor=color, edgecolor="black", alpha=0.8))


def _draw_input(ax, n, p, right, read):
    from matplotlib.patches import Rectangle

    for t in range(-p, right):
        pad = t < 0 or t >= n
        face = "red" if (0 <= t < n and t not in read) else ("whitesmoke" if pad else "white")
        ax.add_patch(Rectangle((t, 0), 1, 1, facecolor=face, edgecolor="black", hatch="///" if pad else None))


def draw_windows(ax, n: int, k: int, s: int = 1, p: int = 0, d: int = 1, ceil_mode: bool = False) -> None:
    """The padded 1-D input (top row, padding hatched, never-read input cells red) and every window below it as a
    row of its taps: floor-mode windows blue, the extra ceil-mode windows orange, and (dashed) a window that
    rounding up would add but PyTorch drops."""
    floor_starts = window_starts(n, k, s, p, d)
    starts = window_starts(n, k, s, p, d, ceil_mode)
    dropped = [t for t in _candidate_starts(n, k, s, p, d) if t not in starts] if ceil_mode and starts else []
    read: set[int] = set()
    for row, start in enumerate(starts + dropped):
        taps = [start + j * d for j in range(k)]
        if start in starts:
            read.update(taps)
        _draw_window(ax, taps, -1.4 * (row + 1), "tab:blue" if start in floor_starts else "tab:orange",
                     dashed=start not in starts)
    right = max([n + p] + [start + d * (k - 1) + 1 for start in starts + dropped])
    _draw_input(ax, n, p, right, read)
    ax.set_xlim(-p - 0.5, right + (3.5 if dropped else 0.5))
    ax.set_ylim(-1.4 * max(len(starts + dropped), 1) - 0.5, 1.5)
    ax.set_aspect("equal")
    ax.axis("off")
    out = len(starts) if starts else "error (PyTorch raises)"
    ax.set_title(f"n={n}, k={k}, s={s}, p={p}, d={d}{', ceil' if ceil_mode else ''}:  out = {out}", fontsize=11)
