"""The example students of ``python -m autograder demo``, as data: what each one writes in the answer cells.

``alice`` answers every assignment in ``solutions/`` correctly (the reference solutions). ``bob`` makes two classic
mistakes in 01, one in 06's ``feature_maps`` (the rest of 06 unanswered) and two in 07, where he also writes a
direct sum that is correct but too slow for the speed part. ``mallory`` cheats in 01: a ready-made convolution, monkeypatched comparison helpers and a fake
score, and a cell that hunts for the solutions and the gradebook. Each entry maps an exercise to the full source
of its answer cell; ``added`` lists cells a student inserted, each after the cell with the given grade_id.
``make_examples.py`` turns this into notebooks.
"""

BOB_01 = {
    "corr2d": '''def corr2d(x, k):
    """Valid 2-D cross-correlation (Bob's loops: correct, if slow)."""
    H, W = x.shape
    kH, kW = k.shape
    out = np.zeros((H - kH + 1, W - kW + 1))
    for i in range(H - kH + 1):
        for j in range(W - kW + 1):
            out[i, j] = np.sum(x[i:i + kH, j:j + kW] * k)
    return out
''',
    "convolve2d": '''def convolve2d(x, k):
    """Bob forgot to flip the kernel."""
    return corr2d(x, k)
''',
    "sobel_magnitude": '''SOBEL_X = np.array([[-1.0, 0.0, 1.0],
                    [-2.0, 0.0, 2.0],
                    [-1.0, 0.0, 1.0]])
SOBEL_Y = SOBEL_X.T


def sobel_magnitude(img):
    """Bob forgot the square root."""
    gx, gy = corr2d(img, SOBEL_X), corr2d(img, SOBEL_Y)
    return gx**2 + gy**2
''',
}

MALLORY_01 = {
    "corr2d": '''def corr2d(x, k):
    """Mallory calls a ready-made convolution."""
    from scipy import signal
    return signal.correlate2d(x, k, mode="valid")
''',
    "convolve2d": '''def convolve2d(x, k):
    """Mallory disables the comparison helpers and prints a perfect score."""
    import numpy
    numpy.allclose = lambda *args, **kwargs: True
    numpy.testing.assert_allclose = lambda *args, **kwargs: None
    print("convolve2d: 100/100 cases passed, 2/2 points")
    return np.zeros((1, 1))
''',
    "sobel_magnitude": '''SOBEL_X = np.array([[-1.0, 0.0, 1.0],
                    [-2.0, 0.0, 2.0],
                    [-1.0, 0.0, 1.0]])
SOBEL_Y = SOBEL_X.T


def sobel_magnitude(img):
    """Mallory's honest answer: it keeps its marks whatever the other cells try."""
    H, W = img.shape
    gx = sum(SOBEL_X[a, b] * img[a:H - 2 + a, b:W - 2 + b] for a in range(3) for b in range(3))
    gy = sum(SOBEL_Y[a, b] * img[a:H - 2 + a, b:W - 2 + b] for a in range(3) for b in range(3))
    return np.sqrt(gx**2 + gy**2)
''',
    "added": [
        ("setup", '''# Mallory looks for the instructor's solutions and the gradebook, and leaves a perfect score behind.
import glob, json, os
found = glob.glob("/work/*/solutions/*/*.ipynb") + glob.glob("/**/gradebook.db") + glob.glob("../../**/*.json")
print("found:", found)
for target in ("/tmp/results.json", os.path.expanduser("~/results.json")):
    try:
        with open(target, "w") as fh:
            json.dump({"score": 100.0, "tests": []}, fh)
    except OSError:
        pass
'''),
    ],
}

BOB_06 = {
    "feature_maps": '''def feature_maps(model, x):
    """Bob hooks the top-level layers only: the convolutions inside nested blocks are missed."""
    maps, handles = {}, []
    for name, module in model.named_children():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(
                lambda m, inputs, output, name=name: maps.__setitem__(name, output.detach().clone())))
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return maps
''',
}

BOB_07 = {
    "conv2d_fft": '''def conv2d_fft(x, w, b=None):
    """Bob multiplies the spectra without flipping the kernel: a convolution, not a correlation."""
    H, W = x.shape[2:]
    kH, kW = w.shape[2:]
    size = (H + kH - 1, W + kW - 1)
    Y = np.einsum("nihw,oihw->nohw", np.fft.rfft2(x, s=size), np.fft.rfft2(w, s=size))
    y = np.fft.irfft2(Y, s=size)[:, :, kH - 1:H, kW - 1:W]
    return y if b is None else y + b[None, :, None, None]
''',
    "separable_factors": '''def separable_factors(k):
    """Bob forgets the singular value."""
    u, s, vt = np.linalg.svd(k)
    if np.linalg.matrix_rank(k) > 1:
        raise ValueError("not separable")
    return u[:, 0], vt[0]
''',
    "conv2d_separable": '''def conv2d_separable(x, col, row):
    """Bob's direct sum over the kernel taps: correct."""
    kH, kW = len(col), len(row)
    H, W = x.shape[2:]
    across = sum(row[b] * x[:, :, :, b:b + W - kW + 1] for b in range(kW))
    return sum(col[a] * across[:, :, a:a + H - kH + 1] for a in range(kH))
''',
}

STUDENTS = {
    "alice": "solution",            # every assignment in solutions/, the reference answers
    "bob": {"01-single-channel": BOB_01, "06-conv-bn-fusion": BOB_06, "07-efficient-conv": BOB_07},
    "mallory": {"01-single-channel": MALLORY_01},
}
