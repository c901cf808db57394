"""The score distribution of an assignment as a PNG (matplotlib, headless), for embedding in a page."""
from __future__ import annotations

import base64
import io
import math


def histogram_png(scores: list[float], max_score: float, title: str) -> bytes:
    """A histogram of ``scores`` over ``[0, max_score]``: one bar per point when the range is small, else 20."""
    from matplotlib.figure import Figure  # no pyplot: renders with Agg, whatever the backend setting

    top = max(max_score, max(scores, default=0.0), 1.0)
    bins = int(math.ceil(top)) if top <= 20 else 20
    fig = Figure(figsize=(6, 2.6), dpi=100)
    ax = fig.subplots()
    ax.hist(scores, bins=bins, range=(0, top), color="#4477aa", edgecolor="white")
    ax.set_xlabel("points")
    ax.set_ylabel("students")
    ax.set_title(title)
    ax.yaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
