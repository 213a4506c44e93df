"""Evaluate a face model on a verification pair set: embed, cosine scores, 10-fold report.

``evaluate_model`` is the library call the trainer reuses; it returns a
:class:`PairSetEvaluation` (the report, the scores and how the images went). ``pair_scores``
turns embeddings into cosine similarities. With ``subtract_mean=True`` (SphereFace's evaluation;
the MobileFaceNet checkpoint's README: 99.17% on LFW with it) the mean embedding of the pairs of
the other folds is subtracted before normalising, separately for every held-out fold, so no test
statistic leaks.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from marginface.data.pairs import PairSet
from marginface.errors import UserInputError
from marginface.eval.embed import compute_embeddings
from marginface.eval.one_sided import OneSidedReport, one_sided_report, rates_at_threshold
from marginface.eval.verification import VerificationReport, contiguous_folds, verify_scores

__all__ = ["PairSetEvaluation", "pair_scores", "fold_ids", "evaluate_model"]


@dataclass(frozen=True)
class PairSetEvaluation:
    """What :func:`evaluate_model` found: the report and every evaluated pair's details.

    ``scores``, ``folds`` and ``issame`` have one entry per evaluated pair (input order);
    ``alignment`` counts the images per alignment method, ``failed_images`` maps each unreadable
    image (skipped with ``skip_bad_images``) to its error, ``missing_images`` lists those that
    were already missing when the set was loaded.
    """

    report: VerificationReport | OneSidedReport
    scores: np.ndarray
    folds: np.ndarray
    issame: np.ndarray
    alignment: dict[str, int]
    failed_images: dict[str, str]
    missing_images: list[str]

    def __iter__(self) -> Iterator[Any]:
        """``report, scores = evaluate_model(...)``: the old tuple result, for one release."""
        warnings.warn("unpacking evaluate_model's result is deprecated: use .report and .scores",
                      DeprecationWarning, stacklevel=2)
        return iter((self.report, self.scores))


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def pair_scores(
    embeddings: np.ndarray,
    pairs: np.ndarray,
    *,
    folds: np.ndarray | None = None,
    subtract_mean: bool = False,
) -> np.ndarray:
    """Cosine similarity of each pair; (N,), or (n_folds, N) when ``subtract_mean``.

    Row f of the per-fold form uses ``mu_f``, the mean embedding of both images of every pair
    outside fold f: ``cos(e_a - mu_f, e_b - mu_f)``.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    pairs = np.asarray(pairs, dtype=np.int64)
    if not subtract_mean:
        unit = _normalise(embeddings)
        return np.einsum("ij,ij->i", unit[pairs[:, 0]], unit[pairs[:, 1]])
    if folds is None:
        raise ValueError("subtract_mean needs the fold of every pair")
    rows = []
    for fold in np.unique(folds):
        train = pairs[folds != fold].ravel()
        mean = embeddings[train].mean(0)
        a, b = (
            _normalise(embeddings[pairs[:, 0]] - mean),
            _normalise(embeddings[pairs[:, 1]] - mean),
        )
        rows.append(np.einsum("ij,ij->i", a, b))
    return np.stack(rows)


def fold_ids(pairset: PairSet, n_folds: int = 10) -> np.ndarray:
    """The protocol's folds (LFW) or ``n_folds`` contiguous runs."""
    if pairset.folds is not None:
        return pairset.folds
    return contiguous_folds(len(pairset), n_folds)


def _plan(pairs: PairSet, n_folds: int, one_sided_ok: bool,
          subtract_mean: bool) -> tuple[bool, np.ndarray]:
    """``(one_sided, folds)``: whether the set has one kind of pair only, and each pair's fold.

    Errors: a one-sided set unless ``one_sided_ok``; ``n_folds`` outside [2, pairs] when folds
    are needed (a one-sided set learns no threshold: its folds matter only to subtract_mean).
    """
    count, positives = len(pairs.issame), int(np.sum(pairs.issame))
    if count == 0:
        raise UserInputError(f"pair set {pairs.name} has no pairs to evaluate "
                             f"({pairs.skipped} skipped)")
    one_sided = positives in (0, count)
    if one_sided and not one_sided_ok:
        raise UserInputError(
            f"pair set {pairs.name} has only {'same' if positives else 'different'} pairs "
            f"({count}): the k-fold accuracy, ROC and TAR at FAR need both kinds "
            "(marginface evaluate reports what such a set allows)")
    if one_sided and not subtract_mean:
        return True, np.zeros(count, dtype=np.int64)
    if pairs.folds is None and not (isinstance(n_folds, int) and 2 <= n_folds <= count):
        raise UserInputError(
            f"n_folds={n_folds!r}: the {count} pairs of {pairs.name} split into 2 to {count} "
            "folds", hints=[("--n-folds", f"N with 2 <= N <= {count}")])
    return one_sided, fold_ids(pairs, n_folds)


def evaluate_model(
    model: torch.nn.Module,
    pairs: PairSet,
    *,
    flip: str | None = "concat",
    batch_size: int = 64,
    progress: bool = True,
    subtract_mean: bool = False,
    skip_bad_images: bool = False,
    num_workers: int = 2,
    n_folds: int = 10,
    fars: tuple[float, ...] = (1e-1, 1e-2, 1e-3),
    details: dict[str, Any] | None = None,
    engine: str = "torch",
    threshold: float | None = None,
    one_sided_ok: bool = False,
    center_crop: bool = False,
) -> PairSetEvaluation:
    """Embed the pair set's images with ``model`` and run the 10-fold protocol.

    Returns a :class:`PairSetEvaluation`: the report and the held-out score of every evaluated
    pair (input order), with alignment counts and failed images. Images that cannot be read are an
    error naming them, unless ``skip_bad_images``: then their pairs are left out and
    ``report.skipped`` counts them (with pairs already skipped while loading the set).
    ``details`` is deprecated (the result carries the same fields); when given it is still filled.
    ``engine``: inference path (``marginface.eval.engines``); ``num_workers`` decode processes.
    ``threshold``: also report accuracy, TAR and FAR at this threshold. A set with only same (or
    only different) pairs is an error, unless ``one_sided_ok``: then the report is a
    :class:`marginface.eval.one_sided.OneSidedReport` of what such a set allows.
    An image that is not an aligned crop and has no landmarks is a
    :class:`~marginface.data.align.NotAlignedError` unless ``center_crop`` (then centre-cropped
    and counted in ``alignment["center"]``).
    """
    _plan(pairs, n_folds, one_sided_ok, subtract_mean)  # before the long embedding step
    used = np.unique(pairs.pairs.ravel())
    items = [pairs.images[i] for i in used]
    result = compute_embeddings(
        model,
        items,
        flip=flip,
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress,
        skip_bad_images=skip_bad_images,
        desc=f"embed {pairs.name}",
        engine=engine,
        center_crop=center_crop,
    )
    remap = np.full(len(pairs.images), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    local = remap[pairs.pairs]
    evaluated = pairs
    if result.failed:
        bad = np.zeros(len(used), dtype=bool)
        bad[list(result.failed)] = True
        keep = ~bad[local].any(axis=1)
        evaluated = pairs.subset(keep)
        local = local[keep]
    one_sided, folds = _plan(evaluated, n_folds, one_sided_ok, subtract_mean)
    raw = pair_scores(result.embeddings, local, folds=folds, subtract_mean=subtract_mean)
    scores = raw  # the held-out score of each pair
    if raw.ndim == 2:
        scores = raw[np.searchsorted(np.unique(folds), folds), np.arange(len(folds))]
    report: VerificationReport | OneSidedReport
    if one_sided:
        report = one_sided_report(scores, evaluated.issame, threshold=threshold,
                                  skipped=evaluated.skipped)
    else:
        report = verify_scores(raw, evaluated.issame, folds=folds, fars=fars,
                               skipped=evaluated.skipped)
        if threshold is not None:
            report.at_threshold = rates_at_threshold(scores, evaluated.issame, threshold)
    evaluation = PairSetEvaluation(
        report=report, scores=scores, folds=folds, issame=evaluated.issame,
        alignment=dict(result.methods),
        failed_images={items[i].name: err for i, err in result.failed.items()},
        missing_images=list(evaluated.skipped_images))
    if details is not None:
        warnings.warn("evaluate_model(details=...) is deprecated: read the result's fields",
                      DeprecationWarning, stacklevel=2)
        details.update(alignment=evaluation.alignment, failed_images=evaluation.failed_images,
                       missing_images=evaluation.missing_images, folds=folds,
                       issame=evaluation.issame)
    return evaluation
