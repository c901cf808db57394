"""The shipped datasets: present, unchanged (sha256 as documented), and loadable offline."""
from __future__ import annotations

import re

import numpy as np

from autograder import datasets


def test_every_file_matches_its_recorded_sha256():
    assert all(datasets.verify().values()), datasets.verify()


def test_readme_documents_every_file_with_source_licence_and_sum():
    readme = (datasets.data_dir() / "README.md").read_text()
    for name, digest in datasets.FILES.items():
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{name}`")), None)
        assert row, f"{name} missing from autograder/data/README.md"
        assert digest in row and len(row.split("|")) >= 6
    shipped = sorted(p.name for p in datasets.data_dir().iterdir() if p.name != "README.md")
    assert shipped == sorted(datasets.FILES)


def test_images_load_as_floats_in_unit_range():
    for name in datasets.IMAGES:
        img = datasets.load_image(name)
        assert img.ndim == 2 and img.dtype == np.float64 and 0 <= img.min() and img.max() <= 1
    assert datasets.load_image("camera").shape == (512, 512)
    assert datasets.load_image("astronaut", gray=False).shape == (512, 512, 3)


def test_digits_load_with_labels():
    X, y = datasets.load_digits()
    assert X.shape == (1797, 8, 8) and y.shape == (1797,)
    assert set(np.unique(y)) == set(range(10)) and X.min() == 0 and X.max() == 16


def test_unknown_names_are_rejected_clearly():
    import pytest

    with pytest.raises(KeyError, match="shipped"):
        datasets.load_image("lena")
    assert re.match(r"^[0-9a-f]{64}$", datasets.sha256(datasets.path("camera.png")))
