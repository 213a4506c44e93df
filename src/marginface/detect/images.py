"""Photos in for detection: decode any Pillow image, apply EXIF orientation, convert to 8-bit RGB.

Grey, CMYK, palette, 16-bit and alpha images are converted, never rejected: 16-bit and float
samples are rescaled from their range to 0..255, transparency is composited onto white. An
unreadable file or one smaller than P-Net's 12x12 window raises :class:`BadImageError`.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from marginface.data.transforms import DECODE_ERRORS

__all__ = ["BadImageError", "ImageSource", "MIN_IMAGE_SIDE", "load_photo", "to_rgb"]

ImageSource = str | Path | bytes | Image.Image | np.ndarray

# P-Net's window: nothing smaller can hold a face.
MIN_IMAGE_SIDE = 12


class BadImageError(ValueError):
    """An image that cannot be read, or is too small to hold a face; the message names it."""


def _wide_to_8bit(image: Image.Image) -> Image.Image:
    array = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16") or (image.mode == "I" and array.max(initial=0) > 255):
        array = array / 65535.0 * 255.0 if array.max(initial=0) > 255 else array
    elif image.mode == "F":
        top = array.max(initial=0)
        array = array * 255.0 if top <= 1.0 else array
    return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8))


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any mode; alpha is composited onto white."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = _wide_to_8bit(image)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def load_photo(source: ImageSource, name: str | None = None) -> Image.Image:
    """Decode ``source`` into an upright 8-bit RGB image (EXIF orientation applied)."""
    label = name or (str(source) if isinstance(source, (str, Path)) else "<image>")
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim not in (2, 3):
            raise BadImageError(f"{label}: expected a uint8 (H, W[, C]) array, got "
                                f"{source.dtype} {source.shape}")
        image = Image.fromarray(source)
    elif isinstance(source, Image.Image):
        image = source
    else:
        if isinstance(source, (str, Path)) and not Path(source).is_file():
            raise BadImageError(f"{label}: image file does not exist")
        try:
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
            image.load()
        except DECODE_ERRORS as error:
            raise BadImageError(f"{label}: cannot read image ({error})") from error
    try:
        image = ImageOps.exif_transpose(image) or image
    except DECODE_ERRORS:
        pass  # a damaged EXIF block: keep the stored orientation rather than fail the image
    image = to_rgb(image)
    if min(image.size) < MIN_IMAGE_SIDE:
        raise BadImageError(f"{label}: image is {image.width}x{image.height}, too small to hold "
                            f"a face (at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels)")
    return image
