"""Image-folder dataset: ``ROOT/<identity>/<image>``, one sub-folder per identity.

Identities are the sorted sub-folder names; label ``i`` is the i-th of them. An empty root or an
identity folder without images is an error. Undecodable images are an error when read, unless
``skip_undecodable=True``: then every image is decoded once at construction and the bad ones are
left out and listed in ``skipped`` (nothing is dropped without being counted).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

from marginface.data.transforms import DECODE_ERRORS, decode_image

__all__ = ["IMAGE_EXTENSIONS", "ImageFolderDataset", "list_images", "list_image_tree"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp", ".tif", ".tiff")


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder`` (by extension), sorted by name."""
    return sorted(
        p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def list_image_tree(folder: Path) -> list[Path]:
    """Image files anywhere below ``folder`` (by extension), sorted; errors if there are none."""
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    paths = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not paths:
        raise ValueError(f"no images under {folder}")
    return paths


class ImageFolderDataset(Dataset):
    """``dataset[i] -> (transform(PIL RGB image), label)`` over ``ROOT/<identity>/<image>``."""

    def __init__(
        self,
        root: str | Path,
        transform: Callable[[Image.Image], Any] | None = None,
        *,
        skip_undecodable: bool = False,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        identities = sorted(p for p in self.root.iterdir() if p.is_dir())
        if not identities:
            raise ValueError(f"empty dataset: {self.root} has no identity sub-folders")
        self.classes: list[str] = [p.name for p in identities]
        self.samples: list[tuple[Path, int]] = []
        self.skipped: list[tuple[Path, str]] = []
        for label, folder in enumerate(identities):
            images = list_images(folder)
            if not images:
                raise ValueError(
                    f"identity {folder.name!r} ({folder}) has no images "
                    f"(extensions {', '.join(IMAGE_EXTENSIONS)})"
                )
            for path in images:
                if skip_undecodable:
                    try:
                        decode_image(path)
                    except DECODE_ERRORS as error:
                        self.skipped.append((path, str(error)))
                        continue
                self.samples.append((path, label))
        if not self.samples:
            raise ValueError(f"empty dataset: no decodable image under {self.root}")
        self.transform = transform

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def labels(self) -> list[int]:
        return [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        try:
            image = decode_image(path)
        except DECODE_ERRORS as error:
            raise ValueError(f"cannot decode image {path}: {error}") from error
        return (self.transform(image) if self.transform else image), label
