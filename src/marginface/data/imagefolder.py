"""Image-folder dataset: ``ROOT/<identity>/<image>``, one sub-folder per identity.

Identities are the sorted sub-folder names; label ``i`` is the i-th of them. An empty root or an
identity folder without images is an error. Undecodable images are an error when read, unless
``skip_undecodable=True``: then every image is decoded once at construction and the bad ones are
left out and listed in ``skipped`` (nothing is dropped without being counted).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

from marginface.data.transforms import DECODE_ERRORS, decode_image

__all__ = ["IMAGE_EXTENSIONS", "ImageFolderDataset", "list_images", "list_image_tree"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp", ".tif", ".tiff")


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder`` (by extension), sorted by name; a dangling link
    with an image extension is listed too, so that reading it fails naming it."""
    return sorted(
        p for p in Path(folder).iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and (p.is_file() or p.is_symlink())
    )


def _walk(directory: Path, ancestors: frozenset[tuple[int, int]], found: list[Path],
          loops: list[Path]) -> None:
    with os.scandir(directory) as entries:
        for entry in entries:
            path = Path(entry.path)
            if entry.is_dir():  # follows symlinks: linked identity folders are walked too
                info = entry.stat()
                key = (info.st_dev, info.st_ino)
                if key in ancestors:  # a link back to a folder above it: a loop
                    loops.append(path)
                    continue
                _walk(path, ancestors | {key}, found, loops)
            elif path.suffix.lower() in IMAGE_EXTENSIONS and (entry.is_file() or
                                                                entry.is_symlink()):
                # a dangling link is listed too, so that reading it fails with its name
                found.append(path)


def list_image_tree(folder: Path) -> list[Path]:
    """Image files anywhere below ``folder`` (by extension), sorted; errors if there are none.

    Symbolic links to folders are followed; a link to a folder that contains it (a loop) is not
    walked again, with a warning naming it. A dangling link with an image extension is listed
    (reading it is then an error naming it).
    """
    folder = Path(folder)
    if not folder.is_dir():
        kind = "is not a folder" if folder.exists() else "does not exist"
        raise FileNotFoundError(f"image folder {folder} {kind}")
    found: list[Path] = []
    loops: list[Path] = []
    info = folder.stat()
    _walk(folder, frozenset({(info.st_dev, info.st_ino)}), found, loops)
    if loops:
        warnings.warn(f"{folder}: {len(loops)} symbolic link(s) loop back to a folder above "
                      f"them and were not followed: {', '.join(map(str, sorted(loops)[:5]))}",
                      UserWarning, stacklevel=2)
    if not found:
        raise ValueError(f"no images under {folder}")
    return sorted(found)


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
