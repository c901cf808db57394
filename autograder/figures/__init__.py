"""Drawing helpers for the notebooks' demo cells, so that a notebook calls a figure in one line and a student
reads only what the assignment is about. Nothing here is graded, and nothing here is an answer.

- :mod:`.grids`: small arrays as grids of numbers, feature-map galleries, image shrinking;
- :mod:`.windows`: the 1-D windows of a convolution or pooling layer (counts taken from PyTorch itself);
- :mod:`.im2col`: the im2col matrix beside the windows it is made of;
- :mod:`.keyfigures` and :mod:`.attach`: key figures, drawn from NumPy and PyTorch only, rendered to PNG and
  embedded in markdown cells for static viewers.
"""
from .grids import draw_matrix, show_maps, shrink
from .im2col import draw_im2col
from .windows import draw_windows

__all__ = ["draw_matrix", "show_maps", "shrink", "draw_im2col", "draw_windows"]
