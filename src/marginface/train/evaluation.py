"""Periodic verification during training: embed each pair set, score, and report accuracy.

Embeddings are ``f(x) + f(flip(x))`` (when ``flip``), L2-normalised; the score of a pair is their
cosine similarity; accuracy, AUC and EER come from ``marginface.eval.verification.verify_scores``
(10-fold protocol: threshold chosen on 9 folds, accuracy on the 10th). In-memory pair sets go
through evaluation's embedding loop (``marginface.eval.embed_tensor``, the ``eager`` engine with
the training precision's autocast), pair sets loaded by ``marginface.data`` through
``marginface.eval.evaluate_model``; both normalise with ``marginface.preprocessing.normalize``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from marginface.eval.embedder import embed_tensor
from marginface.eval.engines import make_forward
from marginface.preprocessing import Preprocessing, normalize, preprocessing_of
from marginface.train.batches import UNCONFIGURED_PREPROCESSING
from marginface.train.builders import PairImages

__all__ = ["normalize_images", "embed_images", "evaluate_pair_set", "best_metric"]


def normalize_images(images: torch.Tensor, mean: Sequence[float], std: Sequence[float],
                     dtype: torch.dtype = torch.float32, bgr: bool = False) -> torch.Tensor:
    """Deprecated (removed after the next release): :func:`marginface.preprocessing.normalize`
    with ``mean``/``std`` given on the 0..1 scale; float input is returned as it is."""
    if images.is_floating_point():
        return images.to(dtype)
    pre = Preprocessing(mean=np.asarray(mean, dtype=float) * 255.0,
                        std=np.asarray(std, dtype=float) * 255.0,
                        channel_order="BGR" if bgr else "RGB")
    return normalize(images, pre).to(dtype)


def embed_images(model: nn.Module, images: torch.Tensor, *,
                 preprocessing: Preprocessing | None = None, batch_size: int = 128,
                 flip: bool = True, device: torch.device | str = "cpu",
                 autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """L2-normalised embeddings (N, D), float32, of uint8 or preprocessed images.

    ``preprocessing`` defaults to the model's stored one (insightface's without one).
    """
    if preprocessing is None:
        preprocessing = preprocessing_of(model, default=UNCONFIGURED_PREPROCESSING)
    was_training = model.training
    try:
        forward = make_forward(model, "eager", input_size=tuple(images.shape[2:]),
                               autocast=autocast_dtype)
        emb = embed_tensor(forward, images, preprocessing=preprocessing,
                           flip="sum" if flip else None, batch_size=batch_size, device=device)
    finally:
        model.train(was_training)
    return F.normalize(emb, dim=1)


def evaluate_pair_set(model: nn.Module, pair_set: Any, *,
                      preprocessing: Preprocessing | None = None, batch_size: int = 128,
                      flip: bool = True, n_folds: int = 10, device: torch.device | str = "cpu",
                      autocast_dtype: torch.dtype | None = None) -> dict[str, Any]:
    """Verification report as a dict (``accuracy_mean``, ``accuracy_std``, ``auc``, ``eer``)."""
    from marginface.eval.verification import verify_scores

    if isinstance(pair_set, PairImages):
        emb = embed_images(model, pair_set.images, preprocessing=preprocessing,
                           batch_size=batch_size, flip=flip, device=device,
                           autocast_dtype=autocast_dtype)
        scores = (emb[0::2] * emb[1::2]).sum(dim=1).numpy().astype(np.float64)
        report = verify_scores(scores, np.asarray(pair_set.issame, dtype=bool), n_folds=n_folds)
        result = report.to_dict()
        result.setdefault("pairs", int(len(scores)))
        result.setdefault("skipped", int(pair_set.skipped))
        return result
    from marginface.eval import evaluate_model

    was_training = model.training
    model.eval()
    try:
        # the training data's own convention: images without landmarks are centre-cropped (the
        # folder and lfw kinds train on such crops), counted in the result's "center_cropped"
        evaluation = evaluate_model(model, pair_set, flip="sum" if flip else None,
                                    batch_size=batch_size, progress=False, num_workers=0,
                                    skip_bad_images=bool(getattr(pair_set, "skip_bad", False)),
                                    n_folds=n_folds, center_crop=True)
    finally:
        model.train(was_training)
    return {**evaluation.report.to_dict(),
            "center_cropped": int(evaluation.alignment.get("center", 0))}


def best_metric(reports: dict[str, dict[str, Any]], best_metric_set: str | None) -> float | None:
    """The accuracy that decides the best checkpoint: ``best_metric_set``'s, else the first set's.

    None when nothing was evaluated (no pair sets, or not rank 0).
    """
    if not reports:
        return None
    key = best_metric_set or next(iter(reports))
    if key not in reports:
        raise ValueError(f"eval.best_metric_set={key!r} is not one of {list(reports)}")
    return float(reports[key]["accuracy_mean"])
