"""The one image decoder: any file Pillow reads -> an upright 8-bit RGB image.

Every path that reads a face image (training readers, alignment, embedding, verification,
detection) decodes through :func:`decode_image`, so a file means the same pixels everywhere:

- the EXIF orientation tag is applied (the image is turned upright; landmark files and the
  detector give coordinates in the upright image);
- 16-bit samples (``I;16*``) are scaled to 0..255 as ``round(v * 255 / 65535)``; 32-bit integer
  samples (``I``) are taken as 8-bit when they all lie in 0..255, as 16-bit when they lie in
  0..65535, else scaled from 0..2^31-1; float samples (``F``) are taken as 0..1 when they all
  lie there, else as 0..255 (clipped);
- greyscale (``1``, ``L``) is replicated to three channels; CMYK is converted by Pillow's
  ``R = (255 - K)(255 - C) / 255`` (Adobe's inverted CMYK JPEGs are read un-inverted);
- transparency (RGBA, LA, PA, premultiplied modes, a palette with a transparent index) is
  composited onto a **white** background (:data:`ALPHA_BACKGROUND`), the convention of photo
  viewers: a transparent pixel's stored colour is undefined and often black;
- an image with more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels (a decompression bomb: a small
  file announcing a huge size) is refused from its header, before anything is allocated.

A file that cannot be decoded raises :class:`BadImageError` (a ``ValueError``) naming it; so does
an image smaller than ``min_side`` when the caller gives one (:data:`MIN_IMAGE_SIDE`, 16 pixels,
is what alignment, embedding and detection require: nothing smaller can hold a face that a 5-point
warp or P-Net's 12-pixel window can use).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

__all__ = [
    "ALPHA_BACKGROUND",
    "BadImageError",
    "DECODE_ERRORS",
    "ImageSource",
    "MIN_IMAGE_SIDE",
    "check_image_size",
    "decode_image",
    "open_image",
    "to_rgb",
    "upright_size",
]

# What Pillow raises for a file that exists but is not a decodable image.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)

ImageSource = str | Path | bytes | Image.Image | np.ndarray

MIN_IMAGE_SIDE = 16
ALPHA_BACKGROUND = (255, 255, 255)
_ORIENTATION = 0x0112  # EXIF tag; values 5..8 swap width and height
_WIDE_MODES = ("I", "F")


class BadImageError(ValueError):
    """An image that cannot be read, is too large to decode or too small to use; the message
    names it."""


def _label(source: object, name: str | None) -> str:
    if name:
        return name
    return str(source) if isinstance(source, (str, Path)) else "<image>"


def open_image(source: str | Path | bytes, name: str | None = None) -> Image.Image:
    """Open ``source`` lazily (header only); :class:`BadImageError` naming it when it is not an
    image or announces more than ``Image.MAX_IMAGE_PIXELS`` pixels."""
    label = _label(source, name)
    if isinstance(source, (str, Path)) and not Path(source).is_file():
        kind = "is a directory" if Path(source).is_dir() else "does not exist"
        raise BadImageError(f"{label}: image file {kind}")
    try:
        with warnings.catch_warnings():
            # the size is checked below, with a message naming the file
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except DECODE_ERRORS as error:
        raise BadImageError(f"{label}: cannot read image ({error})") from error
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and image.width * image.height > limit:
        image.close()
        raise BadImageError(f"{label}: image header announces {image.width}x{image.height} "
                            f"pixels, more than the {limit} that are decoded (a decompression "
                            f"bomb or a corrupt header)")
    return image


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(W, H) of ``image`` once its EXIF orientation is applied (header only)."""
    try:
        orientation = image.getexif().get(_ORIENTATION, 1)
    except DECODE_ERRORS:
        orientation = 1
    return (image.height, image.width) if orientation in (5, 6, 7, 8) else image.size


def _wide_to_8bit(image: Image.Image) -> Image.Image:
    array = np.asarray(image, dtype=np.float64)
    top = float(array.max(initial=0.0))
    if image.mode.startswith("I;16"):
        array = array * (255.0 / 65535.0)
    elif image.mode == "I":
        if top > 65535:
            array = array * (255.0 / 2147483647.0)
        elif top > 255:
            array = array * (255.0 / 65535.0)
    elif image.mode == "F":
        array = array * 255.0 if top <= 1.0 else array
    array = np.nan_to_num(array, nan=0.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), "L")


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any Pillow mode (see the module docstring for each mode)."""
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode in ("L", "1") and "transparency" in image.info:
        image = image.convert("LA")
    elif image.mode == "RGB" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in _WIDE_MODES or image.mode.startswith("I;16"):
        image = _wide_to_8bit(image)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def check_image_size(size_wh: tuple[int, int], label: str, min_side: int = MIN_IMAGE_SIDE) -> None:
    """:class:`BadImageError` naming ``label`` when a side of ``size_wh`` is below ``min_side``."""
    if min(size_wh) < min_side:
        raise BadImageError(f"{label}: image is {size_wh[0]}x{size_wh[1]}, too small to hold "
                            f"a face (at least {min_side}x{min_side} pixels)")


def decode_image(
    source: ImageSource,
    draft_size: tuple[int, int] | None = None,
    *,
    name: str | None = None,
    min_side: int = 0,
) -> Image.Image:
    """Decode a file path, encoded bytes, a PIL image or a uint8 array into upright 8-bit RGB.

    ``draft_size`` (W, H, upright) lets the JPEG decoder downscale by 1/2, 1/4 or 1/8 while
    staying at least that size (``Image.draft``); the caller must read ``image.size`` afterwards.
    ``name`` labels the image in errors (default: its path); ``min_side``: the smallest side
    accepted (0: any). Errors are :class:`BadImageError` naming the image.
    """
    label = _label(source, name)
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim not in (2, 3) or (
                source.ndim == 3 and source.shape[2] not in (3, 4)):
            raise BadImageError(f"{label}: image array must be uint8 (H, W), (H, W, 3) or "
                                f"(H, W, 4), got {source.dtype} {source.shape}")
        image = Image.fromarray(source)
    else:
        image = source if isinstance(source, Image.Image) else open_image(source, name)
        try:
            if draft_size is not None and image.format == "JPEG":
                if upright_size(image) != image.size:
                    draft_size = (draft_size[1], draft_size[0])
                image.draft("RGB", draft_size)
            image.load()
        except DECODE_ERRORS as error:
            raise BadImageError(f"{label}: cannot read image ({error})") from error
        try:
            image = ImageOps.exif_transpose(image) or image
        except DECODE_ERRORS:
            pass  # a damaged EXIF block: keep the stored orientation rather than fail the image
    try:
        image = to_rgb(image)
    except DECODE_ERRORS as error:
        raise BadImageError(f"{label}: cannot convert image mode {image.mode} ({error})") from error
    if min_side:
        check_image_size(image.size, label, min_side)
    return image
