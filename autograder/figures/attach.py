"""Key figures embedded in the notebooks' markdown cells as PNG attachments, so that a static viewer of the
release (GitHub, nbviewer), where no cell has run, still shows them. nbgrader's ``generate_assignment`` keeps
markdown attachments (``tests/test_notebooks.py`` checks the release).

Regenerate after changing a figure: ``python -m autograder.figures.attach`` (then ``make release``).
"""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..course import course_root
from . import keyfigures


@dataclass(frozen=True)
class KeyFigure:
    """``drawer()`` rendered as ``name`` into the markdown cell ``cell_id`` of ``assignment``'s solution
    notebook, on its own line after the paragraph that contains ``after`` (at the end when empty)."""

    assignment: str
    cell_id: str
    name: str
    alt: str
    drawer: Callable
    after: str = ""


KEY_FIGURES = (
    KeyFigure("01-single-channel", "0fa5b5c8", "sliding_window.png", "the first two steps of the sliding window",
              keyfigures.sliding_window),
    KeyFigure("01-single-channel", "24598533", "valid_size.png", "every position of the window's corner",
              keyfigures.valid_size),
    KeyFigure("02-channels-batch", "7375657f", "im2col.png", "windows and the im2col matrix", keyfigures.im2col),
    KeyFigure("03-stride-padding", "635965b5", "conv_windows.png", "the windows of three convolutions",
              keyfigures.conv_windows),
    KeyFigure("03-stride-padding", "ea5f6155", "ceil_windows.png", "pooling windows in floor and ceil mode",
              keyfigures.ceil_windows, after="PyTorch keeps 3"),
    KeyFigure("04-backprop", "560be037", "backprop_by_hand.png", "the three gradients of a tiny convolution",
              keyfigures.backprop_by_hand),
    KeyFigure("05-transposed-conv", "55f4c416", "overlap.png", "stamps per output pixel",
              keyfigures.overlap_pair, after="some pixels get no stamp at all"),
    KeyFigure("06-conv-bn-fusion", "a15c756b", "batchnorm_modes.png", "BatchNorm in eval and in train mode",
              keyfigures.batchnorm_modes),
)


def render_png(fig, dpi: int = 60) -> bytes:
    """The figure as a small PNG (palette of at most 96 colours), and the figure closed."""
    import matplotlib.pyplot as plt
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB").quantize(colors=96)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _with_image_line(source: str, figure: KeyFigure) -> str:
    line = f"![{figure.alt}](attachment:{figure.name})"
    if f"attachment:{figure.name}" in source:
        return source
    paragraphs = source.split("\n\n")
    at = next((i for i, p in enumerate(paragraphs) if figure.after and figure.after in p), len(paragraphs) - 1)
    return "\n\n".join(paragraphs[:at + 1] + [line] + paragraphs[at + 1:])


def embed(nb, figure: KeyFigure, png: bytes) -> None:
    """Attach ``png`` to the figure's markdown cell of the notebook ``nb`` (nbformat) and reference it."""
    cell = next(c for c in nb.cells if c.get("id") == figure.cell_id)
    if cell.cell_type != "markdown":
        raise ValueError(f"{figure.assignment}: cell {figure.cell_id} is not a markdown cell")
    cell.source = _with_image_line(cell.source, figure)
    attachments = dict(cell.get("attachments") or {})
    attachments[figure.name] = {"image/png": base64.b64encode(png).decode("ascii")}
    cell["attachments"] = attachments


def notebook_path(assignment: str, root: Path) -> Path:
    return root / "solutions" / assignment / f"{assignment}.ipynb"


def main(root: Path | None = None) -> None:
    """Embed every key figure in the course's solution notebooks (the course: :mod:`autograder.course`)."""
    import matplotlib
    import nbformat

    matplotlib.use("Agg")
    root = course_root(root)
    for assignment in sorted({f.assignment for f in KEY_FIGURES}):
        path = notebook_path(assignment, root)
        nb = nbformat.read(path, as_version=4)
        for figure in (f for f in KEY_FIGURES if f.assignment == assignment):
            embed(nb, figure, render_png(figure.drawer()))
        nbformat.write(nb, path)
        print(f"{path.relative_to(root)}: {sum(f.assignment == assignment for f in KEY_FIGURES)} key figure(s)")


if __name__ == "__main__":
    main()
