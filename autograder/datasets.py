"""Loaders for the small real datasets shipped as package data in ``autograder/data/`` (nothing is downloaded).

``autograder/data/README.md`` (in the wheel too) lists each file's source, licence and sha256; :data:`FILES` holds
the same sums and :func:`verify` checks them.

    >>> img = load_image("camera")          # (512, 512) float64 in [0, 1]
    >>> rgb = load_image("astronaut", gray=False)   # (512, 512, 3)
    >>> X, y = load_digits()                # (1797, 8, 8) float64 in [0, 16], (1797,) int64
"""
from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np

FILES = {
    "astronaut.png": "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    "brick.png": "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf",
    "camera.png": "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
    "chelsea.png": "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
    "coins.png": "f8d773fc9cfa6f4d8e5942dc34d0a0788fcaed2a4fefbbed0aef5398d7ef4cba",
    "digits.csv.gz": "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22",
    "text.png": "bd84aa3a6e3c9887850d45d606c96b2e59433fbef50338570b63c319e668e6d1",
}
IMAGES = tuple(sorted(name[:-4] for name in FILES if name.endswith(".png")))


def data_dir() -> Path:
    """The datasets folder: ``$CONVLAB_DATASETS`` if set (the grading sandbox binds them there), else the
    package data beside this module, wherever the package is installed."""
    env = os.environ.get("CONVLAB_DATASETS")
    return Path(env) if env else Path(__file__).resolve().with_name("data")


def path(filename: str) -> Path:
    if filename not in FILES:
        raise KeyError(f"unknown dataset file {filename!r}; shipped: {', '.join(sorted(FILES))}")
    return data_dir() / filename


def sha256(file: Path) -> str:
    return hashlib.sha256(Path(file).read_bytes()).hexdigest()


def verify() -> dict[str, bool]:
    """Filename -> whether its sha256 matches the recorded one."""
    return {name: path(name).is_file() and sha256(path(name)) == digest for name, digest in FILES.items()}


def load_image(name: str, gray: bool = True) -> np.ndarray:
    """A shipped photograph as float64 in [0, 1]: ``(H, W)`` when ``gray`` (ITU-R 601 luma for colour images),
    else ``(H, W)`` or ``(H, W, 3)`` as stored. Names: astronaut, brick, camera, chelsea, coins, text."""
    from PIL import Image

    with Image.open(path(f"{name}.png")) as im:
        arr = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im, dtype=np.float64) / 255.0
    if gray and arr.ndim == 3:
        arr = arr[..., :3] @ np.array([0.299, 0.587, 0.114])
    return arr


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The UCI optical-recognition digits as scikit-learn bundles them: images ``(1797, 8, 8)`` float64 with
    values 0..16, labels ``(1797,)`` int64 in 0..9."""
    with gzip.open(path("digits.csv.gz"), "rt") as fh:
        table = np.loadtxt(fh, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
