"""LFW: ``pairs.txt`` (View 2), ``people.txt``, ``name/name_%04d.jpg`` images, 5-point landmarks.

pairs.txt (LFW's README; docs/data.md#verification-sets): first line ``folds n`` (``10 300``), then
per fold ``n`` same lines ``name i j`` and ``n`` different lines ``name1 i name2 j``. people.txt:
the number of folds, then per fold a count and ``name n`` lines. lfw_landmark.txt (and any landmarks
file of that layout): ``relative/path x1 y1 ... x5 y5`` per line, left eye, right eye, nose, left
and right mouth corner.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from marginface.atomic import atomic_write_text
from marginface.data.pairs import PairSet, build_pairset
from marginface.inputs import read_text

__all__ = [
    "lfw_image_path",
    "read_lfw_pairs",
    "read_lfw_people",
    "read_landmarks",
    "write_landmarks",
    "load_lfw",
]


def lfw_image_path(name: str, number: int) -> str:
    """Relative path of LFW image ``number`` of person ``name``: ``name/name_%04d.jpg``."""
    return f"{name}/{name}_{number:04d}.jpg"


def _int(text: str, path: Path, number: int, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(
            f"{path}, line {number}: {what} must be an integer, got {text!r}"
        ) from None


def read_lfw_pairs(path: str | Path) -> list[tuple[str, str, bool, int]]:
    """``[(relpath_a, relpath_b, same, fold)]`` from an LFW pairs.txt, in file order."""
    path = Path(path)
    lines = read_text(path, "LFW pairs file").splitlines()
    header = lines[0].split() if lines else []
    if len(header) != 2:
        raise ValueError(f"{path}, line 1: expected 'folds pairs_per_class', got {lines[:1]}")
    folds, per_class = (_int(v, path, 1, "header field") for v in header)
    entries: list[tuple[str, str, bool, int]] = []
    body = [(n, line.split()) for n, line in enumerate(lines[1:], 2) if line.strip()]
    expected = folds * 2 * per_class
    if len(body) != expected:
        raise ValueError(
            f"{path}: header '{folds} {per_class}' announces {expected} pair lines, found "
            f"{len(body)}"
        )
    for position, (number, fields) in enumerate(body):
        fold, same = position // (2 * per_class), position % (2 * per_class) < per_class
        if same and len(fields) == 3:
            name = fields[0]
            a = lfw_image_path(name, _int(fields[1], path, number, "image number"))
            b = lfw_image_path(name, _int(fields[2], path, number, "image number"))
        elif not same and len(fields) == 4:
            a = lfw_image_path(fields[0], _int(fields[1], path, number, "image number"))
            b = lfw_image_path(fields[2], _int(fields[3], path, number, "image number"))
        else:
            kind = "'name i j' (same pair)" if same else "'name1 i name2 j' (different pair)"
            raise ValueError(f"{path}, line {number}: expected {kind}, got {' '.join(fields)!r}")
        entries.append((a, b, same, fold))
    return entries


def read_lfw_people(path: str | Path) -> list[list[tuple[str, int]]]:
    """LFW people.txt as one ``[(name, image_count)]`` list per fold."""
    path = Path(path)
    lines = read_text(path, "LFW people file").splitlines()
    rows = [(n, line.split()) for n, line in enumerate(lines, 1)]
    rows = [(n, f) for n, f in rows if f]
    if not rows or len(rows[0][1]) != 1:
        raise ValueError(f"{path}, line 1: expected the number of folds")
    folds: list[list[tuple[str, int]]] = []
    position = 1
    for _ in range(_int(rows[0][1][0], path, rows[0][0], "fold count")):
        if position >= len(rows) or len(rows[position][1]) != 1:
            line = rows[position][0] if position < len(rows) else len(rows) + 1
            raise ValueError(f"{path}, line {line}: expected a fold's person count")
        count = _int(rows[position][1][0], path, rows[position][0], "person count")
        people = []
        for number, fields in rows[position + 1 : position + 1 + count]:
            if len(fields) != 2:
                raise ValueError(f"{path}, line {number}: expected 'name n', got {fields}")
            people.append((fields[0], _int(fields[1], path, number, "image count")))
        if len(people) != count:
            raise ValueError(f"{path}: a fold announces {count} people, the file ends first")
        folds.append(people)
        position += 1 + count
    return folds


def read_landmarks(path: str | Path) -> dict[str, np.ndarray]:
    """``{relative_path: (5, 2) float32 points}`` from a file in lfw_landmark.txt's layout."""
    path = Path(path)
    table: dict[str, np.ndarray] = {}
    for number, line in enumerate(read_text(path, "landmarks file").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 11:
            raise ValueError(
                f"{path}, line {number}: expected a path and 10 numbers, got {len(fields)} fields"
            )
        try:
            values = np.array([float(v) for v in fields[1:]], dtype=np.float32)
        except ValueError:
            raise ValueError(
                f"{path}, line {number}: landmarks must be numbers: {line!r}"
            ) from None
        table[fields[0]] = values.reshape(5, 2)
    return table


def write_landmarks(path: str | Path, table: dict[str, np.ndarray]) -> None:
    """Write ``{relative_path: (5, 2)}`` in lfw_landmark.txt's layout (tab separated)."""
    lines = []
    for name, points in table.items():
        values = np.asarray(points, dtype=float).reshape(10)
        lines.append("\t".join([name] + [f"{v:g}" for v in values]))
    atomic_write_text(path, "\n".join(lines) + "\n")


def load_lfw(
    root: str | Path,
    *,
    pairs_file: str | Path | None = None,
    landmarks_file: str | Path | None = None,
    skip_bad_images: bool = False,
) -> PairSet:
    """LFW View 2 from ``root`` (images/, pairs.txt, and lfw_landmark.txt when present)."""
    root = Path(root)
    images_dir = root / "images"
    if not images_dir.is_dir():
        raise FileNotFoundError(f"LFW folder {root} has no images/ sub-folder")
    pairs_path = Path(pairs_file) if pairs_file else root / "pairs.txt"
    if landmarks_file is None and (root / "lfw_landmark.txt").is_file():
        landmarks_file = root / "lfw_landmark.txt"
    landmarks = read_landmarks(landmarks_file) if landmarks_file else None
    entries = read_lfw_pairs(pairs_path)
    return build_pairset(
        [(images_dir / a, images_dir / b, same, fold) for a, b, same, fold in entries],
        name=f"lfw:{root}",
        landmarks=landmarks,
        landmark_root=images_dir,
        skip_bad_images=skip_bad_images,
        where=[f"{pairs_path}, pair {i + 1} (line {i + 2})" for i in range(len(entries))],
    )
