"""Verification pair sets: ``PairSet`` and the simple pairs list ``path_a path_b 0|1``.

A ``PairSet`` is the unique images of a protocol (file paths or encoded bytes, with optional
5-point landmarks) plus the pairs as index pairs, the same/different flags and, where the protocol
defines them, the fold of each pair. Images referenced by a pair that do not exist are an error
naming the file, unless ``skip_bad_images=True``: then their pairs are left out and counted in
``skipped`` (and listed in ``skipped_images``).

Pairs list format (marginface's own): one pair per line, ``path_a path_b label`` separated by
whitespace, label 1 = same identity, 0 = different; relative paths are relative to the list's
folder; blank lines and lines starting with ``#`` are ignored. An optional 4th column gives the
fold (integer) of the pair.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from marginface.atomic import atomic_write_text
from marginface.inputs import read_text

__all__ = ["ImageItem", "PairSet", "load_pairs_list", "write_pairs_list", "build_pairset"]


@dataclass
class ImageItem:
    """One image of a pair set: a file path or encoded bytes, a display name, landmarks (5, 2)."""

    source: Path | bytes
    name: str
    landmarks: np.ndarray | None = None


@dataclass
class PairSet:
    """Unique ``images``; ``pairs`` (N, 2) indices into them; ``issame`` (N,); ``folds`` or None.

    ``aligned`` says the images are already aligned crops (a ``.bin``); otherwise they are aligned
    from their landmarks (or centre-cropped) before embedding.
    """

    images: list[ImageItem]
    pairs: np.ndarray
    issame: np.ndarray
    folds: np.ndarray | None = None
    name: str = "pairs"
    aligned: bool = False
    skipped: int = 0
    skipped_images: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pairs = np.asarray(self.pairs, dtype=np.int64).reshape(-1, 2)
        self.issame = np.asarray(self.issame, dtype=bool).ravel()
        if len(self.pairs) != len(self.issame):
            raise ValueError(f"{len(self.pairs)} pairs but {len(self.issame)} issame flags")
        if len(self.pairs) and (self.pairs.min() < 0 or self.pairs.max() >= len(self.images)):
            raise ValueError(f"pair indices must lie in [0, {len(self.images)})")
        if self.folds is not None:
            self.folds = np.asarray(self.folds, dtype=np.int64).ravel()
            if len(self.folds) != len(self.pairs):
                raise ValueError(f"{len(self.folds)} fold ids but {len(self.pairs)} pairs")

    def __len__(self) -> int:
        return len(self.pairs)

    def subset(self, keep: np.ndarray) -> PairSet:
        """The pairs where ``keep`` is True (images unchanged); dropped pairs add to ``skipped``."""
        keep = np.asarray(keep, dtype=bool)
        return PairSet(
            images=self.images,
            pairs=self.pairs[keep],
            issame=self.issame[keep],
            folds=None if self.folds is None else self.folds[keep],
            name=self.name,
            aligned=self.aligned,
            skipped=self.skipped + int((~keep).sum()),
            skipped_images=list(self.skipped_images),
        )


def build_pairset(
    entries: list[tuple[Path, Path, bool, int | None]],
    *,
    name: str,
    landmarks: dict[str, np.ndarray] | None = None,
    landmark_root: Path | None = None,
    skip_bad_images: bool = False,
    where: list[str] | None = None,
) -> PairSet:
    """Turn ``(path_a, path_b, same, fold)`` entries into a PairSet, checking every file exists.

    ``landmarks`` maps a path relative to ``landmark_root`` (posix form) to its (5, 2) points.
    ``where`` gives, per entry, the text naming its origin (file and line) for error messages.
    """
    index: dict[Path, int] = {}
    images: list[ImageItem] = []
    pairs, issame, folds, keep = [], [], [], []
    missing: list[str] = []
    for number, (path_a, path_b, same, fold) in enumerate(entries):
        ok = True
        for path in (path_a, path_b):
            if path in index:
                continue
            if not path.is_file():
                if not skip_bad_images:
                    origin = f" (referenced at {where[number]})" if where else ""
                    raise FileNotFoundError(
                        f"image {path} does not exist{origin}; pass skip_bad_images / "
                        "--skip-bad-images to leave its pairs out and count them"
                    )
                if str(path) not in missing:
                    missing.append(str(path))
                ok = False
                continue
            points = None
            if landmarks is not None:
                key = path.relative_to(landmark_root).as_posix() if landmark_root else str(path)
                points = landmarks.get(key)
            index[path] = len(images)
            images.append(ImageItem(path, str(path), points))
        keep.append(ok)
        pairs.append((index.get(path_a, 0), index.get(path_b, 0)) if ok else (0, 0))
        issame.append(bool(same))
        folds.append(-1 if fold is None else int(fold))
    keep_array = np.asarray(keep, dtype=bool)
    folds_array = np.asarray(folds, dtype=np.int64)[keep_array]
    return PairSet(
        images=images,
        pairs=np.asarray(pairs, dtype=np.int64).reshape(-1, 2)[keep_array],
        issame=np.asarray(issame, dtype=bool)[keep_array],
        folds=None if (folds_array < 0).any() else folds_array,
        name=name,
        skipped=int((~keep_array).sum()),
        skipped_images=missing,
    )


def load_pairs_list(
    path: str | Path,
    *,
    root: str | Path | None = None,
    landmarks: dict[str, np.ndarray] | None = None,
    skip_bad_images: bool = False,
) -> PairSet:
    """Read a pairs list (``path_a path_b 0|1 [fold]`` per line); see the module docstring."""
    path = Path(path)
    text = read_text(path, "pairs file")
    base = Path(root) if root is not None else path.parent
    entries: list[tuple[Path, Path, bool, int | None]] = []
    where: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        fields = text.split()
        if len(fields) not in (3, 4) or fields[2] not in ("0", "1"):
            raise ValueError(
                f"{path}, line {number}: expected 'path_a path_b 0|1 [fold]', got {text!r}"
            )
        fold = None
        if len(fields) == 4:
            try:
                fold = int(fields[3])
            except ValueError:
                raise ValueError(
                    f"{path}, line {number}: fold must be an integer, got {fields[3]!r}"
                ) from None
        entries.append((base / fields[0], base / fields[1], fields[2] == "1", fold))
        where.append(f"{path}, line {number}")
    if not entries:
        raise ValueError(f"pairs file {path} has no pairs")
    return build_pairset(
        entries,
        name=path.name,
        landmarks=landmarks,
        landmark_root=base,
        skip_bad_images=skip_bad_images,
        where=where,
    )


def write_pairs_list(
    path: str | Path, pairs: list[tuple[str, str, bool]] | list[tuple[str, str, bool, int]]
) -> None:
    """Write ``path_a path_b 0|1 [fold]`` lines (paths should not contain whitespace)."""
    lines = []
    for entry in pairs:
        a, b, same = entry[0], entry[1], entry[2]
        if any(c.isspace() for c in str(a) + str(b)):
            raise ValueError(f"pairs list paths cannot contain whitespace: {a!r}, {b!r}")
        extra = f" {int(entry[3])}" if len(entry) > 3 else ""
        lines.append(f"{a} {b} {int(bool(same))}{extra}")
    atomic_write_text(path, "\n".join(lines) + "\n")
