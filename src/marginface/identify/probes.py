"""Identify probe images against a gallery: ranked identities, or "unknown" below a threshold.

A probe is accepted as its best identity when that score is above the threshold (``score > t``,
the verification convention of :func:`marginface.eval.roc.threshold_at_far`); a threshold for a
chosen false positive identification rate is read from an identification evaluation's report
(:func:`threshold_from_report`).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from marginface.atomic import atomic_write_text
from marginface.data.imagefolder import list_image_tree
from marginface.data.lfw import read_landmarks
from marginface.data.pairs import ImageItem
from marginface.errors import UserInputError
from marginface.eval.embed import check_finite_embeddings, compute_embeddings
from marginface.identify.detected import detected_items
from marginface.identify.gallery import Gallery
from marginface.inputs import finite_number, read_json

__all__ = [
    "UNKNOWN",
    "ProbeAnswer",
    "Identification",
    "identify_images",
    "threshold_from_report",
    "write_identification",
]

UNKNOWN = "unknown"


@dataclass
class ProbeAnswer:
    """One probe: its ``answer`` (an identity or "unknown") and the ranked ``candidates``."""

    probe: str
    answer: str
    score: float
    candidates: list[tuple[str, float]]


@dataclass
class Identification:
    answers: list[ProbeAnswer]
    threshold: float | None
    failed: dict[str, str] = field(default_factory=dict)  # probes with no usable face

    def to_dict(self) -> dict:
        return {
            "threshold": self.threshold,
            "probes": len(self.answers),
            "unknown": sum(a.answer == UNKNOWN for a in self.answers),
            "failed": self.failed,
            "answers": [asdict(a) for a in self.answers],
        }


def threshold_from_report(path: str | Path, fpir: float) -> float:
    """The threshold an identification report (``evaluate_identification``) gives for ``fpir``."""
    path = Path(path)
    report = read_json(path, "report")
    table = report.get("threshold_at_fpir") if isinstance(report, dict) else None
    if not isinstance(table, dict):
        raise UserInputError(f"report {path} is not an identification report (no "
                             "'threshold_at_fpir' table)")
    for key, value in table.items():
        try:
            level = float(key)
        except ValueError:
            raise UserInputError(f"report {path}: threshold_at_fpir key {key!r} is not a "
                                 "number") from None
        if abs(level - fpir) <= 1e-9 * max(fpir, 1e-12):
            return finite_number(value, f"report {path}: threshold_at_fpir[{key!r}]")
    raise ValueError(f"{path} has no threshold for FPIR {fpir}; it has {', '.join(table)}")


def _probe_items(probes: str | Path, landmarks_file: str | Path | None) -> list[ImageItem]:
    probes = Path(probes)
    paths = [probes] if probes.is_file() else list_image_tree(probes)
    base = probes.parent if probes.is_file() else probes
    table = read_landmarks(landmarks_file) if landmarks_file else {}
    return [ImageItem(p, str(p), table.get(p.relative_to(base).as_posix())) for p in paths]


def identify_images(
    model: torch.nn.Module,
    probes: str | Path,
    gallery: Gallery,
    *,
    top_k: int = 5,
    threshold: float | None = None,
    dtype: str = "float32",
    backend: str = "exact",
    landmarks_file: str | Path | None = None,
    batch_size: int = 64,
    num_workers: int = 2,
    progress: bool = True,
    detect: bool = False,
    face: str = "central",
    center_crop: bool = False,
    skip_bad_images: bool = True,
) -> Identification:
    """Rank the gallery's identities for each image of ``probes`` (a file or a folder).

    ``detect``: raw photos; each probe's ``face`` is detected (MTCNN) and aligned, and
    ``landmarks_file`` is ignored. A probe with no face is named in ``failed``. A probe that is
    not an aligned crop (and has no landmarks) is a :class:`~marginface.data.align.NotAlignedError`
    unless ``center_crop``; an unreadable or too small probe is named in ``failed``, or an error
    without ``skip_bad_images``.
    """
    gallery.check_model(model)
    items = _probe_items(probes, None if detect else landmarks_file)
    failed: dict[str, str] = {}
    if detect:
        items, _, failed = detected_items(model, items, face=face, num_workers=num_workers,
                                          progress=progress, skip_bad_images=skip_bad_images)
    result = compute_embeddings(
        model, items, flip=gallery.flip, batch_size=batch_size,
        num_workers=0 if detect else num_workers,
        progress=progress, skip_bad_images=skip_bad_images, desc="identify",
        center_crop=center_crop,
    )
    check_finite_embeddings(result.embeddings, [item.name for item in items], result.failed)
    good = [i for i in range(len(items)) if i not in result.failed]
    names, scores = gallery.search(
        result.embeddings[good], top_k, dtype=dtype, backend=backend
    )
    answers = []
    for row, i in enumerate(good):
        candidates = [(n, float(s)) for n, s in zip(names[row], scores[row], strict=True) if n]
        best, score = candidates[0] if candidates else (UNKNOWN, float("-inf"))
        if threshold is not None and not score > threshold:
            best = UNKNOWN
        answers.append(ProbeAnswer(items[i].name, best, score, candidates))
    failed.update({items[i].name: e for i, e in result.failed.items()})
    return Identification(answers, threshold, failed)


def write_identification(result: Identification, path: str | Path) -> Path:
    """``.json`` (everything) or ``.csv`` (probe, answer, score, rank, identity, candidate score;
    one row per candidate) written atomically."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        atomic_write_text(path, json.dumps(result.to_dict(), indent=2) + "\n")
    elif path.suffix.lower() == ".csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["probe", "answer", "score", "rank", "identity", "identity_score"])
        for a in result.answers:
            for rank, (name, score) in enumerate(a.candidates, 1):
                writer.writerow([a.probe, a.answer, f"{a.score:.6f}", rank, name, f"{score:.6f}"])
        for probe, error in result.failed.items():
            writer.writerow([probe, "no usable face", "", "", "", error])
        atomic_write_text(path, buffer.getvalue())
    else:
        raise ValueError(f"output {path} must end with .json or .csv")
    return path
