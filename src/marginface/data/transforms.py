"""Decoding and training transforms: decode (RGB), optional horizontal flip, scale to the model.

Decoding is :func:`marginface.data.decoding.decode_image` (re-exported here): every image mode,
EXIF orientation, the decompression-bomb guard.

The scaling is the model's own stored preprocessing (``model.config.preprocessing``) applied by
:func:`marginface.preprocessing.normalize`: ``(x - mean) / std`` per channel in the stored channel
order, x the 0..255 pixel value. ``Preprocessing`` is re-exported here (the same class as
``marginface.models.Preprocessing``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from marginface.data.decoding import DECODE_ERRORS, decode_image
from marginface.preprocessing import Preprocessing, normalize

__all__ = [
    "Preprocessing",
    "decode_image",
    "to_tensor",
    "TrainTransform",
    "DECODE_ERRORS",
]

def to_tensor(image: Image.Image | np.ndarray, preprocessing: Preprocessing) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> float32 (3, H, W): ``(x - mean) / std`` by :func:`normalize`."""
    array = np.array(image)  # a copy: torch needs a writable array
    if array.dtype != np.uint8:
        array = array.astype(np.float32)
    pixels = torch.from_numpy(array).permute(2, 0, 1)
    return normalize(pixels, preprocessing).contiguous()


class TrainTransform:
    """Decode -> check size -> random horizontal flip (probability ``flip_p``) -> scaled tensor."""

    def __init__(
        self,
        preprocessing: Preprocessing | Any,
        input_size: Sequence[int],
        flip_p: float = 0.5,
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= flip_p <= 1.0:
            raise ValueError(f"flip_p must be in [0, 1], got {flip_p!r}")
        if len(input_size) != 2:
            raise ValueError(f"input_size must be (H, W), got {input_size!r}")
        self.preprocessing = Preprocessing.from_config(preprocessing)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.flip_p = float(flip_p)
        # Without a seed, torch's generator: DataLoader seeds it differently in every worker.
        self._rng = random.Random(seed) if seed is not None else None

    def __call__(self, source: str | Path | bytes | np.ndarray | Image.Image) -> torch.Tensor:
        image = source if isinstance(source, Image.Image) else decode_image(source)
        height, width = self.input_size
        if image.size != (width, height):
            raise ValueError(
                f"image is {image.size[0]}x{image.size[1]} (W x H), the model expects "
                f"{width}x{height}: align the data first (marginface align)"
            )
        draw = self._rng.random() if self._rng is not None else float(torch.rand(()))
        if draw < self.flip_p:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return to_tensor(image, self.preprocessing)
