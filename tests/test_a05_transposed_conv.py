"""05-transposed-conv: the reference answers (exec'd from the solution notebook) pass, correct alternatives pass
(loops, the zero-insertion route, float32, other integer types), and plausible bugs fail with feedback naming the
case and the mistake."""
from __future__ import annotations


import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tests.harness import answer_tests, as_float32, reference_answers, variant

ASSIGNMENT = "05-transposed-conv"


REF = reference_answers("05-transposed-conv")


# ------------------------------------------------------------------------------------------------------------------
# conv_transpose_output_size
# ------------------------------------------------------------------------------------------------------------------
def size_by_stamps(n, k, stride=1, padding=0, output_padding=0, dilation=1, *, use_op=True, pad_sides=2,
                   use_dilation=True, n_strides=None):
    """Where the last stamp ends, minus the padding, plus output_padding (a NumPy integer, as some answers return)."""
    span = (dilation if use_dilation else 1) * (k - 1) + 1
    last_start = (n - 1 if n_strides is None else n_strides) * stride
    return np.int64(last_start + span - pad_sides * padding + (output_padding if use_op else 0))


def size_by_positions(n, k, stride=1, padding=0, output_padding=0, dilation=1):
    """Every output position a stamp touches, before cropping: the largest one + 1 is the full size."""
    reach = np.add.outer(np.arange(n) * stride, np.arange(k) * dilation)
    return int(reach.max()) + 1 - 2 * padding + output_padding


def size_as_float(n, k, stride=1, padding=0, output_padding=0, dilation=1):
    """The right number as a float (e.g. after a true division somewhere)."""
    return (n - 1) * stride / 1 - 2 * padding + dilation * (k - 1) + output_padding + 1


def size_conv_formula(n, k, stride=1, padding=0, output_padding=0, dilation=1):
    return (n + 2 * padding - dilation * (k - 1) - 1) // stride + 1


# ------------------------------------------------------------------------------------------------------------------
# conv_transpose2d
# ------------------------------------------------------------------------------------------------------------------
def conv_transpose_loops(x, w, b=None, stride=1, padding=0, output_padding=0):
    """Scatter-add, one input pixel at a time."""
    N, C_in, H, W = x.shape
    _, C_out, kh, kw = w.shape
    s, p, op = stride, padding, output_padding
    full = np.zeros((N, C_out, (H - 1) * s + kh + op, (W - 1) * s + kw + op))
    for n in range(N):
        for i in range(H):
            for j in range(W):
                full[n, :, i * s:i * s + kh, j * s:j * s + kw] += np.einsum("c,coab->oab", x[n, :, i, j], w)
    y = full[:, :, p:full.shape[2] - p, p:full.shape[3] - p]
    return y if b is None else y + b[None, :, None, None]


def conv_transpose_zero_insertion(x, w, b=None, stride=1, padding=0, output_padding=0, *, flip=True, crop="both",
                                  op_mode="full", swap_layout=False):
    """Zero insertion, a border of k - 1 zeros (plus output_padding at the end), a stride-1 correlation with the
    flipped kernel, then the padding cropped. The keyword flags reproduce the classic mistakes."""
    if swap_layout:
        w = w.transpose(1, 0, 2, 3)
    N, C_in, H, W = x.shape
    _, C_out, kh, kw = w.shape
    s, p = stride, padding
    op = output_padding if op_mode == "full" else 0
    z = np.zeros((N, C_in, s * (H - 1) + 1, s * (W - 1) + 1))
    z[:, :, ::s, ::s] = x
    z = np.pad(z, ((0, 0), (0, 0), (kh - 1, kh - 1 + op), (kw - 1, kw - 1 + op)))
    kernel = w[:, :, ::-1, ::-1] if flip else w
    full = np.einsum("ncrqab,coab->norq", sliding_window_view(z, (kh, kw), axis=(2, 3)), kernel)
    ho, wo = full.shape[2] - 2 * p, full.shape[3] - 2 * p
    y = {"both": full[:, :, p:p + ho, p:p + wo], "none": full, "start": full[:, :, p:, p:],
         "first": full[:, :, :ho, :wo]}[crop]
    if op_mode == "zeros":
        y = np.pad(y, ((0, 0), (0, 0), (0, output_padding), (0, output_padding)))
    return y if b is None else y + b[None, :, None, None]


# ------------------------------------------------------------------------------------------------------------------
# overlap_counts and has_checkerboard
# ------------------------------------------------------------------------------------------------------------------
def overlap_stamps(n, k, stride, *, combine="product", stride_used=None, size=None, dtype=np.int64):
    """Stamp a k x k block of ones for every input pixel (2-D loops). Flags: the classic mistakes."""
    s = stride if stride_used is None else stride_used
    m = (n - 1) * s + k if size is None else size(n, k, s)
    if combine == "sum":                          # 1-D counts added instead of multiplied
        line = overlap_stamps(n, k, stride, combine="product", stride_used=stride_used, size=size)[0]
        return (line[:, None] + line[None, :]).astype(dtype)
    counts = np.zeros((m, m), dtype=dtype)
    for i in range(n):
        for j in range(n):
            counts[i * s:i * s + k, j * s:j * s + k] += 1
    return counts


def overlap_add_at(n, k, stride):
    """1-D counts with np.add.at, int32, then the outer product."""
    line = np.zeros((n - 1) * stride + k, dtype=np.int32)
    np.add.at(line, (np.arange(n)[:, None] * stride + np.arange(k)[None, :]).ravel(), 1)
    return np.outer(line, line)


def checkerboard_by_counting(k, stride):
    """Count the stamps over a long row and look at the interior (a NumPy bool, as some answers return)."""
    n = k + 4
    line = np.zeros((n - 1) * stride + k, dtype=int)
    for a in range(k):
        line[a:a + (n - 1) * stride + 1:stride] += 1
    inner = line[k:(n - 1) * stride]
    return np.bool_(inner.min() != inner.max())


def checkerboard_floor_ceil(k, stride):
    """Interior counts are floor(k / s) or ceil(k / s): uneven when the two differ."""
    return k // stride != -(-k // stride)


def checkerboard_if_overlap(k, stride):
    return k > stride


def checkerboard_if_strided(k, stride):
    return stride > 1


def checkerboard_divisibility_reversed(k, stride):
    return stride % k != 0


# ------------------------------------------------------------------------------------------------------------------
# resize_conv2d
# ------------------------------------------------------------------------------------------------------------------
def resize_conv_loops(x, w, b, scale):
    """np.kron upsampling, then a loop over output pixels."""
    up = np.kron(x, np.ones((scale, scale)))
    C_out, _, kh, kw = w.shape
    xp = np.pad(up, ((0, 0), (0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2)))
    y = np.zeros((x.shape[0], C_out) + up.shape[2:])
    for i in range(up.shape[2]):
        for j in range(up.shape[3]):
            y[:, :, i, j] = np.einsum("ncab,ocab->no", xp[:, :, i:i + kh, j:j + kw], w)
    return y if b is None else y + b[None, :, None, None]


def resize_conv_windows(x, w, b, scale, *, conv_first=False, pad=True, upsample="nearest", flip=False):
    """Vectorised with sliding_window_view; the keyword flags reproduce the classic mistakes."""
    def grow(a):
        if upsample == "zeros":
            z = np.zeros(a.shape[:2] + (a.shape[2] * scale, a.shape[3] * scale))
            z[:, :, ::scale, ::scale] = a
            return z
        return a.repeat(scale, axis=2).repeat(scale, axis=3)

    def conv(a):
        kh, kw = w.shape[2:]
        if pad:
            a = np.pad(a, ((0, 0), (0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2)))
        kernel = w[:, :, ::-1, ::-1] if flip else w
        y = np.einsum("nchwab,ocab->nohw", sliding_window_view(a, (kh, kw), axis=(2, 3)), kernel)
        return y if b is None else y + b[None, :, None, None]

    return grow(conv(x)) if conv_first else conv(grow(x))


# ------------------------------------------------------------------------------------------------------------------
# the answers, as data
# ------------------------------------------------------------------------------------------------------------------
CORRECT = [
    ("conv_transpose_output_size", REF["conv_transpose_output_size"]),
    ("conv_transpose_output_size", size_by_stamps),
    ("conv_transpose_output_size", size_by_positions),
    ("conv_transpose2d", REF["conv_transpose2d"]),
    ("conv_transpose2d", conv_transpose_loops),
    ("conv_transpose2d", conv_transpose_zero_insertion),
    ("conv_transpose2d", as_float32(REF["conv_transpose2d"])),
    ("overlap_counts", REF["overlap_counts"]),
    ("overlap_counts", overlap_stamps),
    ("overlap_counts", overlap_add_at),
    ("has_checkerboard", REF["has_checkerboard"]),
    ("has_checkerboard", checkerboard_by_counting),
    ("has_checkerboard", checkerboard_floor_ceil),
    ("resize_conv2d", REF["resize_conv2d"]),
    ("resize_conv2d", resize_conv_loops),
    ("resize_conv2d", resize_conv_windows),
    ("resize_conv2d", as_float32(REF["resize_conv2d"])),
]

BUGGY = [
    ("conv_transpose_output_size", variant(size_by_stamps, "size_no_output_padding", use_op=False),
     ["output_padding ignored"]),
    ("conv_transpose_output_size", variant(size_by_stamps, "size_padding_once", pad_sides=1),
     ["padding subtracted once"]),
    ("conv_transpose_output_size", variant(size_by_stamps, "size_no_dilation", use_dilation=False),
     ["dilation ignored"]),
    ("conv_transpose_output_size", size_conv_formula, ["forward convolution formula"]),
    ("conv_transpose_output_size", size_as_float, ["a float instead of an int"]),
    ("conv_transpose2d", variant(conv_transpose_zero_insertion, "ct_layout_swapped", swap_layout=True),
     ["weight layout swapped"]),
    ("conv_transpose2d", variant(conv_transpose_zero_insertion, "ct_unflipped", flip=False), ["kernel flipped"]),
    ("conv_transpose2d", variant(conv_transpose_zero_insertion, "ct_uncropped", crop="none"),
     ["padding not cropped"]),
    ("conv_transpose2d", variant(conv_transpose_zero_insertion, "ct_cropped_start", crop="start"),
     ["padding cropped on one side"]),
    ("conv_transpose2d", variant(conv_transpose_zero_insertion, "ct_cropped_first_rows", crop="first"),
     ["padding cropped on one side"]),
    ("conv_transpose2d", variant(conv_transpose_zero_insertion, "ct_no_output_padding", op_mode="ignore"),
     ["output_padding ignored"]),
    ("conv_transpose2d", variant(conv_transpose_zero_insertion, "ct_output_padding_zeros", op_mode="zeros"),
     ["output_padding appended as zeros"]),
    ("overlap_counts", variant(overlap_stamps, "counts_added", combine="sum"), ["row and column counts added"]),
    ("overlap_counts", variant(overlap_stamps, "counts_stride_1", stride_used=1), ["stride ignored"]),
    ("overlap_counts", variant(overlap_stamps, "counts_size_n_times_s", size=lambda n, k, s: n * s),
     ["output size n * stride"]),
    ("overlap_counts", variant(overlap_stamps, "counts_float", dtype=np.float64),
     ["expected an integer array", "counts as floats"]),
    ("has_checkerboard", checkerboard_if_overlap, ["expected"]),
    ("has_checkerboard", checkerboard_if_strided, ["expected"]),
    ("has_checkerboard", checkerboard_divisibility_reversed, ["expected"]),
    ("resize_conv2d", variant(resize_conv_windows, "resize_conv_first", conv_first=True),
     ["convolved before upsampling"]),
    ("resize_conv2d", variant(resize_conv_windows, "resize_no_padding", pad=False), ["no padding"]),
    ("resize_conv2d", variant(resize_conv_windows, "resize_zero_insertion", upsample="zeros"),
     ["zero insertion instead of nearest neighbour"]),
    ("resize_conv2d", variant(resize_conv_windows, "resize_flipped", flip=True), ["kernel flipped"]),
]


test_correct_answer_passes, test_buggy_answer_fails_with_feedback = answer_tests(CORRECT, BUGGY)
