"""Readers for the IJB-B / IJB-C protocol files.

1:1 (insightface's release of the IJB meta data, space separated, no header):
- ``<name>_face_tid_mid.txt``: ``image template_id media_id`` per face image;
- ``<name>_template_pair_label.txt``: ``template_1 template_2 label`` (1 mated, 0 not);
- ``<name>_name_5pts_score.txt``: ``image x1 y1 ... x5 y5 detector_score`` (landmarks in the
  ``loose_crop`` image).
1:N (NIST's CSVs, with a header): ``<name>_1N_gallery_G1.csv``, ``_G2.csv`` and
``<name>_1N_probe_mixed.csv``, one row per image of a template; the columns ``TEMPLATE_ID`` and
``SUBJECT_ID`` are used (the images come through the 1:1 files' template ids).
Every reader names the file and line of bad input.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "FaceList",
    "read_face_tid_mid",
    "read_template_pairs",
    "read_landmarks_scores",
    "read_1n_templates",
]


@dataclass
class FaceList:
    """Per face image: ``names``, ``templates`` and ``medias`` (int64 arrays)."""

    names: list[str]
    templates: np.ndarray
    medias: np.ndarray


def _rows(path: str | Path, fields: int, what: str):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IJB {what} file {path} does not exist")
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != fields:
            raise ValueError(f"{path}, line {number}: expected {fields} fields, got {len(parts)}")
        yield path, number, parts


def _int(text: str, path: Path, number: int) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{path}, line {number}: {text!r} is not an integer") from None


def read_face_tid_mid(path: str | Path) -> FaceList:
    """``<name>_face_tid_mid.txt``: image, template id, media id per line."""
    names, templates, medias = [], [], []
    for file, number, (name, tid, mid) in _rows(path, 3, "face/template/media"):
        names.append(name)
        templates.append(_int(tid, file, number))
        medias.append(_int(mid, file, number))
    return FaceList(names, np.array(templates, np.int64), np.array(medias, np.int64))


def read_template_pairs(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(template_1, template_2, label)`` int64 arrays of ``<name>_template_pair_label.txt``."""
    rows = [
        [_int(v, file, number) for v in parts]
        for file, number, parts in _rows(path, 3, "template pair")
    ]
    table = np.array(rows, np.int64).reshape(-1, 3)
    if not np.isin(table[:, 2], (0, 1)).all():
        raise ValueError(f"{path}: pair labels must be 0 or 1")
    return table[:, 0], table[:, 1], table[:, 2]


def read_landmarks_scores(path: str | Path) -> dict[str, tuple[np.ndarray, float]]:
    """``{image: ((5, 2) landmarks, detector score)}`` of ``<name>_name_5pts_score.txt``."""
    table = {}
    for file, number, parts in _rows(path, 12, "landmarks/score"):
        try:
            values = np.array([float(v) for v in parts[1:]], np.float32)
        except ValueError:
            message = f"{file}, line {number}: landmarks and score must be numbers"
            raise ValueError(message) from None
        table[parts[0]] = (values[:10].reshape(5, 2), float(values[10]))
    return table


def read_1n_templates(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Unique ``(template_ids, subject_ids)`` of a NIST 1:N CSV (first appearance order)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IJB 1:N file {path} does not exist")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip().upper() for h in reader.fieldnames or []]
        if "TEMPLATE_ID" not in header or "SUBJECT_ID" not in header:
            raise ValueError(f"{path}: header must name TEMPLATE_ID and SUBJECT_ID, got {header}")
        reader.fieldnames = header
        subjects: dict[int, int] = {}
        for number, row in enumerate(reader, 2):
            tid = _int(row["TEMPLATE_ID"], path, number)
            sid = _int(row["SUBJECT_ID"], path, number)
            if subjects.setdefault(tid, sid) != sid:
                raise ValueError(f"{path}, line {number}: template {tid} has two subjects")
    return np.array(list(subjects), np.int64), np.array(list(subjects.values()), np.int64)
