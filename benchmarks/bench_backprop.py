"""Speed of the reference solutions of 04-backprop and 05-transposed-conv against PyTorch (CPU, float32).

    python benchmarks/bench_backprop.py [--repeat 15] [--threads N]

The references are the answer cells of the solution notebooks (``conv2d_backward``, ``conv_transpose2d``), exec'd
as the notebook runs them. Each is timed against torch on the same inputs, interleaved in the same run (so that a
busy machine slows both alike), on shapes of real networks: the backward pass of a ResNet-style 3x3 convolution
(``aten.convolution_backward``, the kernel autograd calls, with all three gradients) and DCGAN-style upsampling
layers. The goal is a ratio within 3x torch float32. A report, not a test.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def reference(assignment: str, name: str):
    nb = json.loads((ROOT / "solutions" / assignment / f"{assignment}.ipynb").read_text())
    ns: dict = {}
    exec("import numpy as np", ns)
    for cell in nb["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == name:
            exec("".join(cell["source"]), ns)
            return ns[name]
    raise KeyError(name)


def interleaved(fns: dict, repeat: int) -> dict:
    """Best (minimum) seconds of each function, calling them in turn ``repeat`` times after one warm-up call each:
    on a shared machine the minimum is the least disturbed run (timeit's rule), and interleaving exposes both
    functions to the same load."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return {k: min(v) for k, v in times.items()}


def bench_conv_backward(shape, repeat):
    n, c_in, c_out, h, k, s, p = shape
    conv2d_backward = reference("04-backprop", "conv2d_backward")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c_in, h, h), dtype=np.float32)
    w = rng.standard_normal((c_out, c_in, k, k), dtype=np.float32)
    ho = (h + 2 * p - k) // s + 1
    dout = rng.standard_normal((n, c_out, ho, ho), dtype=np.float32)
    xt, wt, gt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(dout)
    ours = conv2d_backward(dout, x, w, s, p)
    theirs = torch.ops.aten.convolution_backward(gt, xt, wt, [c_out], [s, s], [p, p], [1, 1], False, [0, 0], 1,
                                                 [True, True, True])
    err = max(float(np.abs(a - b.numpy()).max() / np.abs(b.numpy()).max()) for a, b in zip(ours, theirs))
    t = interleaved({
        "torch": lambda: torch.ops.aten.convolution_backward(gt, xt, wt, [c_out], [s, s], [p, p], [1, 1], False,
                                                             [0, 0], 1, [True, True, True]),
        "numpy": lambda: conv2d_backward(dout, x, w, s, p),
    }, repeat)
    label = f"conv2d_backward  x ({n}, {c_in}, {h}, {h}) w ({c_out}, {c_in}, {k}, {k}) s{s} p{p}"
    return label, t, err


def bench_conv_transpose(shape, repeat):
    n, c_in, c_out, h, k, s, p, op = shape
    conv_transpose2d = reference("05-transposed-conv", "conv_transpose2d")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c_in, h, h), dtype=np.float32)
    w = rng.standard_normal((c_in, c_out, k, k), dtype=np.float32)
    b = rng.standard_normal(c_out, dtype=np.float32)
    xt, wt, bt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
    F = torch.nn.functional
    ours = conv_transpose2d(x, w, b, s, p, op)
    ref = F.conv_transpose2d(xt, wt, bt, s, p, op).numpy()
    err = float(np.abs(ours - ref).max() / np.abs(ref).max())
    t = interleaved({"torch": lambda: F.conv_transpose2d(xt, wt, bt, s, p, op),
                     "numpy": lambda: conv_transpose2d(x, w, b, s, p, op)}, repeat)
    label = f"conv_transpose2d x ({n}, {c_in}, {h}, {h}) w ({c_in}, {c_out}, {k}, {k}) s{s} p{p} op{op}"
    return label, t, err


CONV_BACKWARD = [(32, 64, 64, 32, 3, 1, 1), (8, 16, 32, 64, 3, 1, 1), (16, 32, 64, 32, 3, 2, 1)]
CONV_TRANSPOSE = [(16, 128, 64, 16, 4, 2, 1, 0), (8, 64, 32, 32, 4, 2, 1, 0), (8, 64, 32, 32, 3, 2, 1, 1)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; numpy {np.__version__}; float32, "
          f"best of {args.repeat} interleaved runs")
    print(f"{'case':<78} {'torch ms':>9} {'numpy ms':>9} {'ratio':>6} {'rel err':>8}")
    rows = [bench_conv_backward(s, args.repeat) for s in CONV_BACKWARD]
    rows += [bench_conv_transpose(s, args.repeat) for s in CONV_TRANSPOSE]
    for label, t, err in rows:
        print(f"{label:<78} {t['torch'] * 1e3:9.1f} {t['numpy'] * 1e3:9.1f} {t['numpy'] / t['torch']:5.1f}x "
              f"{err:8.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
