"""01-single-channel: the sliding window (``corr2d``, ``convolve2d``, ``sobel_magnitude``)."""
from __future__ import annotations

from ..params import Param
from ..registry import register
from ..shapes import image_kernel, kernel_fits
from ..spec import Call, Exercise, Misconception, NotApplicable, unless_torch_rejects
from ._torch import F, torch

ASSIGNMENT = "01-single-channel"

SOBEL_X = [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]
SOBEL_Y = [[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]]


def _corr(x, k):
    return F().conv2d(x[None, None], k[None, None])[0, 0]


def _image_kernel(p, draw) -> Call:
    return Call((draw.array(p["H"], p["W"]), draw.array(p["kH"], p["kW"])))


def _describe_image_kernel(p) -> str:
    return f"x ({p['H']}, {p['W']}), k ({p['kH']}, {p['kW']})"


_IMAGE_KERNEL = dict(
    params=image_kernel(11),
    build=_image_kernel,
    describe=_describe_image_kernel,
    valid=kernel_fits,
    fixed_params=[
        {"H": 5, "W": 7, "kH": 2, "kW": 3},   # non-square image and kernel
        {"H": 4, "W": 6, "kH": 1, "kW": 1},   # 1x1 kernel: a scaled copy
        {"H": 3, "W": 5, "kH": 3, "kW": 5},   # full-size kernel: one output value
        {"H": 1, "W": 8, "kH": 1, "kW": 3},   # a single row
        {"H": 9, "W": 4, "kH": 4, "kW": 2},   # tall image, tall kernel
    ],
)

_FLIP_BOTH = Misconception(
    "flipped kernel",
    "you flipped the kernel (true convolution). Deep learning's 'convolution' is cross-correlation: "
    "out[i, j] = sum over (a, b) of x[i + a, j + b] * k[a, b], with no flip.",
    lambda x, k: _corr(x, k.flip(0, 1)),
)
_FLIP_ROWS = Misconception(
    "kernel flipped along one axis only",
    "you reversed the kernel's rows but not its columns (or the other way round); "
    "a true convolution flips both axes: k[::-1, ::-1].",
    lambda x, k: _corr(x, k.flip(0)),
)
_FLIP_COLS = Misconception(
    "kernel flipped along one axis only",
    "you reversed the kernel's columns but not its rows; a true convolution flips both axes: k[::-1, ::-1].",
    lambda x, k: _corr(x, k.flip(1)),
)


def _padded(x, k, before, after, flip=False):
    """Cross-correlation (or, with ``flip``, convolution) of ``x`` zero-padded by ``before(kernel_size)`` rows and
    columns on the top/left and ``after(kernel_size)`` on the bottom/right: the non-valid output sizes."""
    (kh, kw) = k.shape
    xp = F().pad(x, (before(kw), after(kw), before(kh), after(kh)))
    return _corr(xp, k.flip(0, 1) if flip else k)


def _matmul_window(x, k):
    """``np.sum(window @ k)``: for a square kernel, sum_a (window @ k)[a, b] over b weighs window[a, m] by the
    m-th row sum of k, i.e. cross-correlation with a kernel whose every row is k's row sums."""
    kh, kw = k.shape
    if kh != kw:
        raise NotApplicable("window @ k needs a square kernel")
    return _corr(x, k.sum(1)[None, :].expand(kh, kw))


_MATMUL = Misconception(
    "@ where * was meant",
    "you multiplied window and kernel with @ (a matrix product: rows times columns) and summed the result; the "
    "sliding window needs the element-wise product: np.sum(window * k).",
    _matmul_window,
)

_PADDING_NAME = "zero padding instead of the valid output"
_PADDING_TEXT = ("your output is as large as the input (or larger): you padded the image with zeros. Asked for "
                 "is the valid output, (H - kH + 1, W - kW + 1): only the positions where the whole kernel lies "
                 "inside the image, without padding.")


def _padding_misconceptions(flip: bool) -> list[Misconception]:
    """'same' output (both ways of splitting an even kernel's padding) and 'full' output."""
    ways = [(lambda n: (n - 1) // 2, lambda n: n // 2),     # PyTorch's padding="same": the extra row after
            (lambda n: n // 2, lambda n: (n - 1) // 2),     # the extra row before
            (lambda n: n - 1, lambda n: n - 1)]             # 'full' (np.convolve's default mode)
    return [Misconception(_PADDING_NAME, _PADDING_TEXT,
                          lambda x, k, b=b, a=a: _padded(x, k, b, a, flip)) for b, a in ways]


_NO_FLIP = Misconception(
    "kernel not flipped",
    "you computed cross-correlation; true convolution first flips the kernel in both axes "
    "(out = corr2d(x, k[::-1, ::-1])).",
    _corr,
)

corr2d = Exercise(
    name="corr2d",
    assignment=ASSIGNMENT,
    points=3,
    signature="corr2d(x, k)",
    oracle=_corr,
    misconceptions=[_FLIP_BOTH, _FLIP_ROWS, _FLIP_COLS, _MATMUL, *_padding_misconceptions(flip=False)],
    **_IMAGE_KERNEL,
)

convolve2d = Exercise(
    name="convolve2d",
    assignment=ASSIGNMENT,
    points=2,
    signature="convolve2d(x, k)",
    oracle=lambda x, k: _corr(x, k.flip(0, 1)),
    misconceptions=[_NO_FLIP,
                    Misconception(_FLIP_ROWS.name, _FLIP_ROWS.explanation, _FLIP_ROWS.compute),
                    Misconception(_FLIP_COLS.name, _FLIP_COLS.explanation, _FLIP_COLS.compute),
                    Misconception("kernel transposed instead of flipped",
                                  "you used k.T; transposing mirrors the kernel across its diagonal. Convolution "
                                  "rotates it by 180 degrees: k[::-1, ::-1].",
                                  unless_torch_rejects(lambda x, k: _corr(x, k.T))),
                    *[Misconception("kernel rotated by 90 degrees, not 180",
                                    "np.rot90(k) turns the kernel a quarter turn; convolution turns it by 180 "
                                    "degrees: np.rot90(k, 2), which is k[::-1, ::-1].",
                                    unless_torch_rejects(
                                        lambda x, k, turns=turns: _corr(x, torch().rot90(k, turns, (0, 1)))))
                      for turns in (1, -1)],
                    Misconception("image flipped instead of the kernel",
                                  "your output is the right one rotated by 180 degrees: you flipped the image "
                                  "(or the output) instead of the kernel.",
                                  lambda x, k: _corr(x.flip(0, 1), k)),
                    *_padding_misconceptions(flip=True)],
    **_IMAGE_KERNEL,
)


def _sobel_parts(img):
    t = torch()
    kx = t.tensor(SOBEL_X, dtype=img.dtype, device=img.device)
    ky = t.tensor(SOBEL_Y, dtype=img.dtype, device=img.device)
    return _corr(img, kx), _corr(img, ky)


def _sobel(img):
    gx, gy = _sobel_parts(img)
    return (gx**2 + gy**2).sqrt()


def _prewitt(img):
    t = torch()
    kx = t.tensor([[-1.0, 0.0, 1.0]] * 3, dtype=img.dtype, device=img.device)
    return (_corr(img, kx) ** 2 + _corr(img, kx.T) ** 2).sqrt()


sobel_magnitude = Exercise(
    name="sobel_magnitude",
    assignment=ASSIGNMENT,
    points=2,
    signature="sobel_magnitude(img)",
    oracle=_sobel,
    params=[Param("H", 3, 15), Param("W", 3, 15)],
    build=lambda p, draw: Call((draw.array(p["H"], p["W"]),)),
    describe=lambda p: f"img ({p['H']}, {p['W']})",
    valid=lambda p: p["H"] >= 3 and p["W"] >= 3,
    # the smallest image (one output value) last: feedback explains the first failing case, and a single value
    # cannot show a pattern (any wrong number is "the expected one times c")
    fixed_params=[{"H": 4, "W": 9}, {"H": 12, "W": 5}, {"H": 3, "W": 3}],
    misconceptions=[
        Misconception("no square root", "you returned gx**2 + gy**2; the magnitude is its square root.",
                      lambda img: _sobel(img) ** 2),
        Misconception("L1 magnitude", "you returned |gx| + |gy|; the gradient magnitude is sqrt(gx**2 + gy**2).",
                      lambda img: sum(g.abs() for g in _sobel_parts(img))),
        Misconception("one direction only", "you returned |gx| only; combine both directions.",
                      lambda img: _sobel_parts(img)[0].abs()),
        Misconception("one direction only", "you returned |gy| only; combine both directions.",
                      lambda img: _sobel_parts(img)[1].abs()),
        Misconception("the same kernel twice", "your result is sqrt(2) * |gx|: you used SOBEL_X for both gx and "
                                               "gy; gy needs SOBEL_Y.",
                      lambda img: _sobel_parts(img)[0].abs() * 2**0.5),
        Misconception("the same kernel twice", "your result is sqrt(2) * |gy|: you used SOBEL_Y for both gx and "
                                               "gy; gx needs SOBEL_X.",
                      lambda img: _sobel_parts(img)[1].abs() * 2**0.5),
        Misconception("Prewitt instead of Sobel", "you used the Prewitt kernels (rows [-1, 0, 1] with equal "
                                                  "weights); Sobel weights the middle row (column) by 2: "
                                                  "[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]].",
                      _prewitt),
        Misconception(_PADDING_NAME, "your output has the input's size: you padded the image with zeros. Asked "
                                     "for is the valid output, (H - 2, W - 2), without padding.",
                      lambda img: _sobel(F().pad(img, (1, 1, 1, 1)))),
    ],
)

register(corr2d, convolve2d, sobel_magnitude)
