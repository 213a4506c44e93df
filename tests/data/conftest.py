"""Tiny synthetic image folders for the data tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def make_folder(root: Path, counts: dict[str, int], size=(24, 20), fmt="JPEG") -> Path:
    """ROOT/<identity>/<k>.jpg with deterministic noise images of ``size`` (W, H)."""
    rng = np.random.default_rng(len(counts))
    suffix = ".jpg" if fmt == "JPEG" else ".png"
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(count):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{k:03d}{suffix}", format=fmt)
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "faces", {"alice": 3, "bob": 1, "carol": 2})


@pytest.fixture
def folder_factory():
    return make_folder
