"""Speed of the reference convolutions of 02-channels-batch and 03-stride-padding against PyTorch (CPU).

    python benchmarks/bench_conv.py [--repeat 15] [--threads N] [--markdown FILE]

The references are the answer cells of the solution notebooks (``conv2d_im2col`` of 02, ``conv2d`` of 03 with its
helper ``pad2d``), exec'd in notebook order as the notebook runs them. Each is timed against ``F.conv2d`` on the same
inputs, in float32 (inputs cast once, outside the timing) and in float64, interleaved in the same run so that a busy
machine slows both alike (in an order that rotates from round to round); the figure is the ratio of the best
(minimum) times over ``--repeat`` rounds. Shapes: a
small early layer (N=8, 16 -> 32 channels, 64 x 64, 3x3) and a wider one (N=32, 64 -> 64, 32 x 32, 3x3).
The goal is a ratio within 1.5x torch in float32. A report, not a test.

torch uses all its intra-op threads unless ``--threads`` says otherwise; NumPy's BLAS uses its own (set
``OPENBLAS_NUM_THREADS`` to change it).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
SHAPES = [  # (N, C_in, C_out, H, k)
    (8, 16, 32, 64, 3),
    (32, 64, 64, 32, 3),
]
GOAL = 1.5


def references() -> dict:
    """The answer cells of both solution notebooks, exec'd in order in one namespace with only ``np``."""
    ns: dict = {"np": np}
    for aid, names in [("02-channels-batch", ("conv2d_im2col",)), ("03-stride-padding", ("pad2d", "conv2d"))]:
        nb = json.loads((ROOT / "solutions" / aid / f"{aid}.ipynb").read_text())
        for cell in nb["cells"]:
            if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") in names:
                exec("".join(cell["source"]), ns)  # noqa: S102 - our own solution notebooks
    return {"conv2d_im2col (02)": ns["conv2d_im2col"], "conv2d (03)": lambda x, w, b: ns["conv2d"](x, w, b)}


def best_times(fns: dict, repeat: int) -> dict:
    """Minimum seconds of each function over ``repeat`` interleaved rounds, after one warm-up call each. The order
    rotates from round to round: a function that runs right after another one on the same input finds it in the
    cache, which would favour whoever comes second."""
    for fn in fns.values():
        fn()
    best = {k: float("inf") for k in fns}
    names = list(fns)
    for r in range(repeat):
        for k in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            fns[k]()
            best[k] = min(best[k], time.perf_counter() - start)
    return best


def run(repeat: int) -> list[dict]:
    refs = references()
    rows = []
    rng = np.random.default_rng(0)
    for n, c_in, c_out, h, k in SHAPES:
        x64 = rng.standard_normal((n, c_in, h, h))
        w64 = rng.standard_normal((c_out, c_in, k, k))
        b64 = rng.standard_normal(c_out)
        for dtype in (np.float32, np.float64):
            x, w, b = (a.astype(dtype) for a in (x64, w64, b64))
            tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))
            expected = F.conv2d(tx, tw, tb).numpy()
            for name, fn in refs.items():
                got = fn(x, w, b)
                err = float(np.abs(got - expected).max() / np.abs(expected).max())
                assert got.shape == expected.shape and err < (1e-4 if dtype == np.float32 else 1e-10), (name, err)
            fns = {"F.conv2d": lambda: F.conv2d(tx, tw, tb)}
            fns.update({name: (lambda fn=fn: fn(x, w, b)) for name, fn in refs.items()})
            with torch.no_grad():
                t = best_times(fns, repeat)
            for name in refs:
                rows.append({"shape": f"x ({n}, {c_in}, {h}, {h}), w ({c_out}, {c_in}, {k}, {k})",
                             "dtype": np.dtype(dtype).name, "reference": name, "ms": t[name] * 1e3,
                             "torch_ms": t["F.conv2d"] * 1e3, "ratio": t[name] / t["F.conv2d"]})
    return rows


def table(rows: list[dict], markdown: bool = False) -> str:
    head = ["shape", "dtype", "reference", "reference ms", "F.conv2d ms", "ratio", f"within {GOAL:g}x"]
    body = [[r["shape"], r["dtype"], r["reference"], f"{r['ms']:.2f}", f"{r['torch_ms']:.2f}", f"{r['ratio']:.2f}x",
             ("yes" if r["ratio"] <= GOAL else "no") if r["dtype"] == "float32" else "-"] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body])
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body)]
    fmt = "  ".join(f"{{:{'<' if i < 3 else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*head), fmt.format(*["-" * w for w in widths])] + [fmt.format(*r) for r in body])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="timed rounds (default 15); the best time counts")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table as Markdown to FILE")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = run(args.repeat)
    setup = (f"torch {torch.__version__} ({torch.get_num_threads()} threads), NumPy {np.__version__}, "
             f"Python {platform.python_version()}, {platform.machine()}, best of {args.repeat}")
    print(setup)
    print(table(rows))
    if args.markdown:
        args.markdown.write_text(f"{setup}\n\n{table(rows, markdown=True)}\n")
        print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
