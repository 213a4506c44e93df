"""Photos in for detection: :func:`marginface.data.decoding.decode_image` (every Pillow mode,
EXIF orientation applied, alpha onto white), at least :data:`MIN_IMAGE_SIDE` pixels on a side.

An unreadable file, or one smaller than that, raises :class:`BadImageError` naming it.
"""

from __future__ import annotations

from PIL import Image

from marginface.data.decoding import (
    MIN_IMAGE_SIDE,
    BadImageError,
    ImageSource,
    decode_image,
    to_rgb,
)

__all__ = ["BadImageError", "ImageSource", "MIN_IMAGE_SIDE", "load_photo", "to_rgb"]


def load_photo(source: ImageSource, name: str | None = None) -> Image.Image:
    """Decode ``source`` into an upright 8-bit RGB image (EXIF orientation applied)."""
    return decode_image(source, name=name, min_side=MIN_IMAGE_SIDE)
