"""01-single-channel: the notebook's reference solutions and other correct answers pass; plausible bugs fail
with feedback that names the mistake.

The reference solutions are executed from the solution notebook's answer cells, not copied here.
"""
from __future__ import annotations


import numpy as np
from tests.harness import answer_tests, reference_answers

SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
SOBEL_Y = SOBEL_X.T




REF = reference_answers("01-single-channel")


# --- corr2d: correct answers ------------------------------------------------------------------------------------

def corr2d_loops(x, k):
    kh, kw = k.shape
    out = np.zeros((x.shape[0] - kh + 1, x.shape[1] - kw + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.sum(x[i:i + kh, j:j + kw] * k)
    return out


def corr2d_pure_python(x, k):
    kh, kw = k.shape
    oh, ow = x.shape[0] - kh + 1, x.shape[1] - kw + 1
    rows = [[sum(float(x[i + a, j + b]) * float(k[a, b]) for a in range(kh) for b in range(kw))
             for j in range(ow)] for i in range(oh)]
    return np.array(rows, dtype=float).reshape(oh, ow)


def corr2d_shifted_sum(x, k):
    """Vectorised over pixels: one shifted slice of the image per kernel entry."""
    kh, kw = k.shape
    oh, ow = x.shape[0] - kh + 1, x.shape[1] - kw + 1
    out = np.zeros((oh, ow))
    for a in range(kh):
        for b in range(kw):
            out += k[a, b] * x[a:a + oh, b:b + ow]
    return out


def corr2d_im2col(x, k):
    windows = np.lib.stride_tricks.sliding_window_view(x, k.shape)
    oh, ow = windows.shape[:2]
    return (windows.reshape(oh * ow, -1) @ k.ravel()).reshape(oh, ow)


def corr2d_float32(x, k):
    windows = np.lib.stride_tricks.sliding_window_view(x.astype(np.float32), k.shape)
    return np.tensordot(windows, k.astype(np.float32), axes=([2, 3], [0, 1]))


# --- corr2d: bugs -----------------------------------------------------------------------------------------------

def corr2d_flipped(x, k):
    return corr2d_loops(x, k[::-1, ::-1])


def corr2d_flip_rows(x, k):
    return corr2d_loops(x, k[::-1])


def corr2d_off_by_one(x, k):
    kh, kw = k.shape
    out = np.zeros((x.shape[0] - kh, x.shape[1] - kw))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.sum(x[i:i + kh, j:j + kw] * k)
    return out


def corr2d_same(x, k):
    kh, kw = k.shape
    xp = np.pad(x, (((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2)))
    return corr2d_loops(xp, k)


def corr2d_full(x, k):
    kh, kw = k.shape
    return corr2d_loops(np.pad(x, ((kh - 1, kh - 1), (kw - 1, kw - 1))), k)


def corr2d_int_output(x, k):
    kh, kw = k.shape
    out = np.zeros((x.shape[0] - kh + 1, x.shape[1] - kw + 1), dtype=int)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.sum(x[i:i + kh, j:j + kw] * k)
    return out


def corr2d_double_slice(x, k):
    kh, kw = k.shape
    out = np.zeros((x.shape[0] - kh + 1, x.shape[1] - kw + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.sum(x[i:i + kh][j:j + kw] * k)   # slices the rows twice
    return out


def corr2d_square_window(x, k):
    kh, _ = k.shape
    out = np.zeros((x.shape[0] - kh + 1, x.shape[1] - kh + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.sum(x[i:i + kh, j:j + kh] * k)   # kH used for the width too
    return out


# The ready-made convolutions are imported inside the answers, three ways: the grader reads the answer's source,
# so the violation is named whether or not scipy is installed.
def corr2d_scipy(x, k):
    from scipy.signal import correlate2d

    return correlate2d(x, k, mode="valid")


def corr2d_np_correlate(x, k):
    kh, kw = k.shape
    return np.array([sum(np.correlate(x[i + a], k[a], mode="valid") for a in range(kh))
                     for i in range(x.shape[0] - kh + 1)])


# --- convolve2d -------------------------------------------------------------------------------------------------

def convolve2d_loops(x, k):
    kh, kw = k.shape
    out = np.zeros((x.shape[0] - kh + 1, x.shape[1] - kw + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            for a in range(kh):
                for b in range(kw):
                    out[i, j] += x[i + a, j + b] * k[kh - 1 - a, kw - 1 - b]
    return out


def convolve2d_rot180(x, k):
    return corr2d_shifted_sum(x, np.rot90(k, 2))


def convolve2d_np_flip(x, k):
    return corr2d_im2col(x, np.flip(k))


def convolve2d_float32(x, k):
    return corr2d_float32(x, k[::-1, ::-1])


def convolve2d_no_flip(x, k):
    return corr2d_loops(x, k)


def convolve2d_flip_rows(x, k):
    return corr2d_loops(x, k[::-1])


def convolve2d_flip_cols(x, k):
    return corr2d_loops(x, k[:, ::-1])


def convolve2d_transposed(x, k):
    return corr2d_loops(x, k.T)


def convolve2d_rot90(x, k):
    return corr2d_loops(x, np.rot90(k))


def convolve2d_flip_image(x, k):
    return corr2d_loops(x[::-1, ::-1], k)


def convolve2d_full(x, k):
    kh, kw = k.shape
    return corr2d_loops(np.pad(x, ((kh - 1, kh - 1), (kw - 1, kw - 1))), k[::-1, ::-1])


def convolve2d_off_by_one(x, k):
    return corr2d_off_by_one(x, k[::-1, ::-1])


def convolve2d_scipy(x, k):
    from scipy import signal

    return signal.convolve2d(x, k, mode="valid")


# --- sobel_magnitude --------------------------------------------------------------------------------------------

def sobel_hypot(img):
    return np.hypot(corr2d_loops(img, SOBEL_X), corr2d_loops(img, SOBEL_Y))


def sobel_slices(img):
    """The 3x3 stencils written out with slices."""
    gx = (img[:-2, 2:] - img[:-2, :-2]) + 2 * (img[1:-1, 2:] - img[1:-1, :-2]) + (img[2:, 2:] - img[2:, :-2])
    gy = (img[2:, :-2] - img[:-2, :-2]) + 2 * (img[2:, 1:-1] - img[:-2, 1:-1]) + (img[2:, 2:] - img[:-2, 2:])
    return np.sqrt(gx * gx + gy * gy)


def sobel_convolve(img):
    """True convolution only flips the sign of each Sobel derivative: the magnitude is the same."""
    return np.sqrt(convolve2d_loops(img, SOBEL_X) ** 2 + convolve2d_loops(img, SOBEL_Y) ** 2)


def sobel_float32(img):
    img = img.astype(np.float32)
    gx = corr2d_float32(img, SOBEL_X.astype(np.float32))
    gy = corr2d_float32(img, SOBEL_Y.astype(np.float32))
    return np.sqrt(gx**2 + gy**2)


def sobel_no_sqrt(img):
    return corr2d_loops(img, SOBEL_X) ** 2 + corr2d_loops(img, SOBEL_Y) ** 2


def sobel_l1(img):
    return np.abs(corr2d_loops(img, SOBEL_X)) + np.abs(corr2d_loops(img, SOBEL_Y))


def sobel_gx_only(img):
    return np.abs(corr2d_loops(img, SOBEL_X))


def sobel_same_kernel_twice(img):
    gx = corr2d_loops(img, SOBEL_X)
    gy = corr2d_loops(img, SOBEL_X)
    return np.sqrt(gx**2 + gy**2)


def sobel_prewitt(img):
    prewitt = np.array([[-1.0, 0.0, 1.0]] * 3)
    return np.hypot(corr2d_loops(img, prewitt), corr2d_loops(img, prewitt.T))


def sobel_padded(img):
    return sobel_hypot(np.pad(img, 1))


def sobel_normalised_kernels(img):
    return np.hypot(corr2d_loops(img, SOBEL_X / 8), corr2d_loops(img, SOBEL_Y / 8))


def sobel_rescaled(img):
    mag = sobel_hypot(img)
    return mag / mag.max()


def sobel_off_by_one(img):
    h, w = img.shape
    gx = np.array([[np.sum(img[i:i + 3, j:j + 3] * SOBEL_X) for j in range(w - 3)] for i in range(h - 3)])
    gy = np.array([[np.sum(img[i:i + 3, j:j + 3] * SOBEL_Y) for j in range(w - 3)] for i in range(h - 3)])
    return np.sqrt(gx**2 + gy**2).reshape(h - 3, w - 3)


def sobel_scipy(img):
    import scipy.ndimage

    gx = scipy.ndimage.sobel(img, axis=1, mode="constant")[1:-1, 1:-1]
    gy = scipy.ndimage.sobel(img, axis=0, mode="constant")[1:-1, 1:-1]
    return np.hypot(gx, gy)


# --- the tests --------------------------------------------------------------------------------------------------

CORRECT = [
    ("corr2d", REF["corr2d"]),
    ("corr2d", corr2d_loops),
    ("corr2d", corr2d_pure_python),
    ("corr2d", corr2d_shifted_sum),
    ("corr2d", corr2d_im2col),
    ("corr2d", corr2d_float32),
    ("convolve2d", REF["convolve2d"]),
    ("convolve2d", convolve2d_loops),
    ("convolve2d", convolve2d_rot180),
    ("convolve2d", convolve2d_np_flip),
    ("convolve2d", convolve2d_float32),
    ("sobel_magnitude", REF["sobel_magnitude"]),
    ("sobel_magnitude", sobel_hypot),
    ("sobel_magnitude", sobel_slices),
    ("sobel_magnitude", sobel_convolve),
    ("sobel_magnitude", sobel_float32),
]

BUGGY = [  # (exercise, answer, what the feedback must say)
    ("corr2d", corr2d_flipped, ("flipped kernel",)),
    ("corr2d", corr2d_flip_rows, ("kernel flipped along one axis only",)),
    ("corr2d", corr2d_off_by_one, ("off-by-one",)),
    ("corr2d", corr2d_same, ("zero padding instead of the valid output",)),
    ("corr2d", corr2d_full, ("zero padding instead of the valid output",)),
    ("corr2d", corr2d_int_output, ("dtype",)),
    ("corr2d", corr2d_double_slice, ()),
    ("corr2d", corr2d_square_window, ()),
    ("corr2d", corr2d_scipy, ("from scratch", "scipy.signal")),
    ("corr2d", corr2d_np_correlate, ("from scratch", "numpy.correlate")),
    ("convolve2d", convolve2d_no_flip, ("kernel not flipped",)),
    ("convolve2d", convolve2d_flip_rows, ("kernel flipped along one axis only",)),
    ("convolve2d", convolve2d_flip_cols, ("kernel flipped along one axis only",)),
    ("convolve2d", convolve2d_transposed, ("kernel transposed instead of flipped",)),
    ("convolve2d", convolve2d_rot90, ("kernel rotated by 90 degrees",)),
    ("convolve2d", convolve2d_flip_image, ("image flipped instead of the kernel",)),
    ("convolve2d", convolve2d_full, ("zero padding instead of the valid output",)),
    ("convolve2d", convolve2d_off_by_one, ("off-by-one",)),
    ("convolve2d", convolve2d_scipy, ("from scratch", "scipy.signal")),
    ("sobel_magnitude", sobel_no_sqrt, ("no square root",)),
    ("sobel_magnitude", sobel_l1, ("L1 magnitude",)),
    ("sobel_magnitude", sobel_gx_only, ("one direction only",)),
    ("sobel_magnitude", sobel_same_kernel_twice, ("the same kernel twice",)),
    ("sobel_magnitude", sobel_prewitt, ("Prewitt instead of Sobel",)),
    ("sobel_magnitude", sobel_padded, ("zero padding instead of the valid output",)),
    ("sobel_magnitude", sobel_normalised_kernels, ("scale factor",)),
    ("sobel_magnitude", sobel_rescaled, ("scale factor",)),
    ("sobel_magnitude", sobel_off_by_one, ("off-by-one",)),
    ("sobel_magnitude", sobel_scipy, ("from scratch", "scipy.ndimage")),
]


test_correct_answer_passes, test_buggy_answer_fails_with_named_mistake = answer_tests(CORRECT, BUGGY, REF)
