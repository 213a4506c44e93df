"""IJB template features: per-image features, then frames of a media averaged, then the media of
a template pooled (insightface's IJB-B/C evaluation, after VGGFace2 / Xie & Zisserman).

Per image (embedded with the flip modes of :func:`marginface.eval.embedder.embed_batch`):
- ``flip="sum"``: image + mirrored image (insightface's ``use_flip_test``); ``None``: image only;
- ``norm="quality"``: the feature's norm is kept as a quality weight (insightface's
  ``use_norm_score=True``); ``norm="normalize"``: each feature is L2-normalised first;
- ``detector_scores``: each feature multiplied by its face detector score
  (insightface's ``use_detector_score``).
Template: ``t = sum_m mean_{i in m} f_i`` over the template's media m, then ``t / |t|``; the
score of two templates is the inner product of their normalised features (cosine).
"""

from __future__ import annotations

import numpy as np

__all__ = ["NORM_MODES", "image_features", "template_features"]

NORM_MODES = ("quality", "normalize")


def image_features(
    embeddings: np.ndarray, *, norm: str = "quality", detector_scores: np.ndarray | None = None
) -> np.ndarray:
    """Per-image features (N, D) float64 from raw embeddings (flip already applied)."""
    if norm not in NORM_MODES:
        raise ValueError(f"norm must be one of {NORM_MODES}, got {norm!r}")
    features = np.asarray(embeddings, np.float64)
    if norm == "normalize":
        features = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    if detector_scores is not None:
        scores = np.asarray(detector_scores, np.float64)
        if scores.shape != (len(features),):
            raise ValueError(f"detector_scores has shape {scores.shape}, need ({len(features)},)")
        features = features * scores[:, None]
    return features


def template_features(
    features: np.ndarray, templates: np.ndarray, medias: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(template_ids sorted, (T, D) normalised template features)``: media means summed."""
    features = np.asarray(features, np.float64)
    templates, medias = np.asarray(templates), np.asarray(medias)
    if not (len(features) == len(templates) == len(medias)):
        raise ValueError(
            f"features ({len(features)}), templates ({len(templates)}) and medias "
            f"({len(medias)}) must have one entry per image"
        )
    ids, template_index = np.unique(templates, return_inverse=True)
    # one group per (template, media): its mean, then summed into the template
    pairs, group = np.unique(np.stack([template_index, medias], 1), axis=0, return_inverse=True)
    group = group.reshape(-1)
    sums = np.zeros((len(pairs), features.shape[1]))
    np.add.at(sums, group, features)
    means = sums / np.bincount(group, minlength=len(pairs))[:, None]
    pooled = np.zeros((len(ids), features.shape[1]))
    np.add.at(pooled, pairs[:, 0], means)
    norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return ids, pooled / norms
