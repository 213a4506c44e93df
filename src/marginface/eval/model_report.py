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
from marginface.errors import UserInputError, naming_file
from marginface.eval.embed import NonFiniteEmbeddingError, model_preprocessing
from marginface.eval.evaluate import evaluate_model
from marginface.eval.one_sided import OneSidedReport
from marginface.eval.plots import plot_roc
from marginface.eval.verification import VerificationReport
from marginface.inputs import require_file
from marginface.outputs import check_output_dir

__all__ = ["run_evaluation", "load_model_file"]


def load_model_file(path: str | Path) -> torch.nn.Module:
    """Load a marginface model file (``marginface.models.load_model``), ready for inference."""
    path = require_file(path, "model file")
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
    n_folds: int | None = None,
    threshold: float | None = None,
    center_crop: bool = False,
) -> VerificationReport | OneSidedReport:
    """Evaluate ``model_file`` on ``pairs_spec`` and write report.json, scores.csv and roc.png.

    ``detect`` ("central" / "largest"): align every image from its detected face (MTCNN) instead
    of landmarks (any landmarks file is ignored); the report's ``detection`` counts faces per
    image and the pairs left out because an image had no face.

    ``n_folds``: folds of a set without its own (default 10); a set with its own folds (LFW)
    refuses another number. ``threshold``: also report
    accuracy, TAR and FAR there. A set with only same or only different pairs gets the report of
    what it allows (:mod:`marginface.eval.one_sided`) and no roc.png. ``out_dir`` is checked
    before any work; scores.csv and report.json are written before the plot.

    ``center_crop``: images that are neither aligned crops nor in the landmarks file are
    centre-cropped (counted in the report's ``alignment``) instead of a
    :class:`~marginface.data.align.NotAlignedError`.
    """
    start = time.perf_counter()
    out_dir = check_output_dir(out_dir, "out_dir")
    if threads is not None:
        torch.set_num_threads(threads)
    model = load_model_file(model_file)
    pairs = load_pairs(pairs_spec, landmarks_file=None if detect else landmarks_file,
                       skip_bad_images=skip_bad_images)
    if n_folds is not None and pairs.folds is not None:
        own = len(np.unique(pairs.folds))
        if n_folds != own:
            raise UserInputError(f"{pairs.name} has its own {own} folds (its protocol's): "
                                 f"n_folds={n_folds} (--n-folds) applies only to a set without")
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
        n_folds=10 if n_folds is None else n_folds,
        threshold=threshold,
        one_sided_ok=True,
        center_crop=center_crop,
    )
    report, scores = evaluation.report, evaluation.scores
    if not np.isfinite(scores).all():
        raise NonFiniteEmbeddingError(
            f"{int((~np.isfinite(scores)).sum())} pair score(s) are NaN or infinite: the "
            f"model {model_file} or its input is broken; no report is written")
    out_dir.mkdir(parents=True, exist_ok=True)
    with naming_file(out_dir / "scores.csv"), \
            atomic_write(out_dir / "scores.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["fold", "same", "score"])
        for fold, same, score in zip(evaluation.folds, evaluation.issame, scores, strict=True):
            writer.writerow([int(fold), int(same), f"{float(score):.6f}"])
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
    with naming_file(out_dir / "report.json"):
        atomic_write_text(out_dir / "report.json", json.dumps(payload, indent=2) + "\n")
    if isinstance(report, VerificationReport):  # a one-sided set has no ROC
        title = (f"{Path(pairs.name).name}: acc {100 * report.accuracy_mean:.2f}%, "
                 f"AUC {report.auc:.4f}")
        with naming_file(out_dir / "roc.png"):
            plot_roc(scores, evaluation.issame, out_dir / "roc.png", title=title)
    return report
