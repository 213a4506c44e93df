"""``marginface evaluate``: a model file + a pair set spec -> report.json, scores.csv, roc.png."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import torch

from marginface.atomic import atomic_write, atomic_write_text
from marginface.data.loading import load_pairs
from marginface.detect.aligned import detect_pairset
from marginface.eval.embed import NonFiniteEmbeddingError, model_preprocessing
from marginface.eval.evaluate import evaluate_model
from marginface.eval.plots import plot_roc
from marginface.eval.verification import VerificationReport

__all__ = ["run_evaluation", "load_model_file"]


def load_model_file(path: str | Path) -> torch.nn.Module:
    """Load a marginface model file (``marginface.models.load_model``), ready for inference."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    from marginface.models import load_model

    return load_model(path).eval()


def run_evaluation(
    model_file: str | Path,
    pairs_spec: str,
    out_dir: str | Path,
    *,
    flip: str | None = "concat",
    batch_size: int = 64,
    subtract_mean: bool = False,
    skip_bad_images: bool = False,
    landmarks_file: str | Path | None = None,
    num_workers: int = 2,
    threads: int | None = None,
    progress: bool = True,
    engine: str = "torch",
    detect: str | None = None,
    center_crop: bool = False,
) -> VerificationReport:
    """Evaluate ``model_file`` on ``pairs_spec`` and write report.json, scores.csv and roc.png.

    ``detect`` ("central" / "largest"): align every image from its detected face (MTCNN) instead
    of landmarks (any landmarks file is ignored); the report's ``detection`` counts faces per
    image and the pairs left out because an image had no face. ``center_crop``: images that are
    neither aligned crops nor in the landmarks file are centre-cropped (counted in the report's
    ``alignment``) instead of a :class:`~marginface.data.align.NotAlignedError`.
    """
    start = time.perf_counter()
    if threads is not None:
        torch.set_num_threads(threads)
    out_dir = Path(out_dir)
    model = load_model_file(model_file)
    pairs = load_pairs(pairs_spec, landmarks_file=None if detect else landmarks_file,
                       skip_bad_images=skip_bad_images)
    detection: dict | None = None
    if detect is not None:
        _, template, _ = model_preprocessing(model)
        pairs, found, no_face_pairs = detect_pairset(
            pairs, template, policy=detect, num_workers=num_workers, progress=progress,
            skip_bad_images=skip_bad_images)
        detection = dict(found.to_dict(), policy=detect, no_face_pairs=no_face_pairs)
    evaluation = evaluate_model(
        model,
        pairs,
        flip=flip,
        batch_size=batch_size,
        progress=progress,
        subtract_mean=subtract_mean,
        skip_bad_images=skip_bad_images,
        num_workers=num_workers,
        engine=engine,
        center_crop=center_crop,
    )
    report, scores = evaluation.report, evaluation.scores
    if not np.isfinite(scores).all():
        raise NonFiniteEmbeddingError(
            f"{int((~np.isfinite(scores)).sum())} pair score(s) are NaN or infinite: the "
            f"model {model_file} or its input is broken; no report is written")
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(out_dir / "scores.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["fold", "same", "score"])
        for fold, same, score in zip(evaluation.folds, evaluation.issame, scores, strict=True):
            writer.writerow([int(fold), int(same), f"{float(score):.6f}"])
    title = f"{Path(pairs.name).name}: acc {100 * report.accuracy_mean:.2f}%, AUC {report.auc:.4f}"
    plot_roc(scores, evaluation.issame, out_dir / "roc.png", title=title)
    payload = report.to_dict()
    payload.update(
        model_file=str(model_file),
        pairs_spec=str(pairs_spec),
        flip=flip,
        subtract_mean=subtract_mean,
        engine=engine,
        alignment=evaluation.alignment,
        center_crop=center_crop,
        failed_images=evaluation.failed_images,
        missing_images=evaluation.missing_images,
        seconds=round(time.perf_counter() - start, 2),
    )
    if detection is not None:
        payload["detection"] = detection
    atomic_write_text(out_dir / "report.json", json.dumps(payload, indent=2) + "\n")
    return report
