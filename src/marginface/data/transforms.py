"""Decoding and training transforms: decode (RGB), optional horizontal flip, scale to the model.

The scaling is the model's own stored preprocessing (``model.config.preprocessing``): the input is
``(x - mean) / std`` per channel in the stored channel order, x the 0..255 pixel value, e.g.
insightface's ``(x / 255 - 0.5) / 0.5`` is mean 127.5, std 127.5 and SphereFace/MobileFaceNet's
``(x - 127.5) / 128`` is mean 127.5, std 128.
"""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

__all__ = [
    "Preprocessing",
    "decode_image",
    "to_tensor",
    "TrainTransform",
    "DECODE_ERRORS",
]

# What Pillow raises for a file that exists but is not a decodable image.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


@dataclass(frozen=True)
class Preprocessing:
    """Per-channel ``(x - mean) / std`` on 0..255 pixels, channel order, alignment template.

    ``template`` is "" when the model names none (then inputs must already have its size).
    """

    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)
    channel_order: str = "RGB"
    template: str = "arcface_112x112"

    def __post_init__(self) -> None:
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean/std must be 3 values with std > 0, got {self.mean}, {self.std}")

    @classmethod
    def from_config(cls, config: Any) -> Preprocessing:
        """From a model config's ``preprocessing`` (marginface.models' dataclass or a mapping)."""
        if isinstance(config, Preprocessing):
            return config
        get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)

        def triple(value: Any) -> tuple[float, float, float]:
            values = [float(v) for v in np.broadcast_to(np.asarray(value, dtype=float), (3,))]
            return (values[0], values[1], values[2])

        template = get("alignment_template", None) or get("template", None)
        return cls(
            mean=triple(get("mean", 127.5)),
            std=triple(get("std", 128.0)),
            channel_order=str(get("channel_order", "RGB")).upper(),
            template=str(template) if template else "",
        )


def decode_image(
    source: str | Path | bytes | np.ndarray, draft_size: tuple[int, int] | None = None
) -> Image.Image:
    """Decode a file path, encoded bytes or a uint8 array into an RGB PIL image.

    ``draft_size`` (W, H) lets the JPEG decoder downscale by 1/2, 1/4 or 1/8 while staying at least
    that size (``Image.draft``); the caller must read ``image.size`` afterwards.
    """
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim != 3 or source.shape[2] != 3:
            raise ValueError(
                f"image array must be uint8 (H, W, 3), got {source.dtype} {source.shape}"
            )
        return Image.fromarray(source, "RGB")
    image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    if draft_size is not None and image.format == "JPEG":
        image.draft("RGB", draft_size)
    image = image.convert("RGB")  # convert() loads the pixels; decode errors surface here
    return image


def to_tensor(image: Image.Image | np.ndarray, preprocessing: Preprocessing) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> float32 (3, H, W) scaled as ``(x - mean) / std``."""
    array = np.asarray(image, dtype=np.float32)
    if preprocessing.channel_order == "BGR":
        array = array[:, :, ::-1]
    array = (array - np.asarray(preprocessing.mean, np.float32)) / np.asarray(
        preprocessing.std, np.float32
    )
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


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
