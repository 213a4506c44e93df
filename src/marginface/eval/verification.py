"""The 10-fold verification protocol on similarity scores (LFW View 2, insightface's .bin sets).

For each fold: the threshold of best accuracy is chosen on the other folds' pairs and the accuracy
is measured on the held-out fold; the report gives mean and (population) standard deviation over
folds (docs/evaluation.md#definitions). Folds are the protocol's own (LFW pairs.txt) or, without
them, contiguous splits as in insightface (the first ``n % k`` folds one pair longer). ROC AUC, EER
and TAR at FAR are computed on all pairs' held-out scores; ``threshold`` is the best-accuracy
threshold on all pairs and ``threshold_at_far`` the cosine threshold to deploy at each FAR.

Scores may also be given per fold, shape ``(n_folds, N)``: row f is used when fold f is held out
(e.g. after subtracting the mean embedding of the other folds); the held-out score of each pair is
then ``scores[fold(i), i]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from marginface.eval.one_sided import ThresholdRates
from marginface.eval.roc import (
    best_accuracy_threshold,
    equal_error_rate,
    far_levels,
    roc_auc,
    tar_at_far,
)

__all__ = ["VerificationReport", "contiguous_folds", "verify_scores"]


@dataclass
class VerificationReport:
    """Result of ``verify_scores``; ``to_dict()`` is JSON-ready (FAR keys as strings)."""

    accuracy_mean: float
    accuracy_std: float
    auc: float
    eer: float
    tar_at_far: dict[float, float]
    threshold: float
    threshold_at_far: dict[float, float]
    pairs: int
    skipped: int = 0
    positives: int = 0
    negatives: int = 0
    n_folds: int = 10
    fold_accuracies: list[float] = field(default_factory=list)
    fold_thresholds: list[float] = field(default_factory=list)
    at_threshold: ThresholdRates | None = None  # the rates at a threshold the user gave

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["tar_at_far"] = {f"{k:g}": v for k, v in self.tar_at_far.items()}
        out["threshold_at_far"] = {
            f"{k:g}": (v if np.isfinite(v) else None) for k, v in self.threshold_at_far.items()
        }
        return out

    def summary(self) -> str:
        tars = ", ".join(f"TAR@FAR={k:g}: {v:.4f}" for k, v in self.tar_at_far.items())
        return (
            f"accuracy {100 * self.accuracy_mean:.2f}% +- {100 * self.accuracy_std:.2f} "
            f"({self.n_folds} folds, {self.pairs} pairs, {self.skipped} skipped); "
            f"AUC {self.auc:.5f}; EER {100 * self.eer:.2f}%; {tars}; "
            f"threshold {self.threshold:.4f}"
            + ("" if self.at_threshold is None else f"; {self.at_threshold.summary()}")
        )


def contiguous_folds(n: int, n_folds: int) -> np.ndarray:
    """Fold id of each of ``n`` items split into ``n_folds`` contiguous runs (sklearn KFold)."""
    if not (isinstance(n_folds, int) and 2 <= n_folds <= n):
        raise ValueError(
            f"n_folds must be an int in [2, {n}] (the number of pairs), got {n_folds!r}"
        )
    sizes = np.full(n_folds, n // n_folds)
    sizes[: n % n_folds] += 1
    return np.repeat(np.arange(n_folds), sizes)


def verify_scores(
    scores: np.ndarray,
    issame: np.ndarray,
    *,
    n_folds: int = 10,
    fars: Sequence[float] = (1e-1, 1e-2, 1e-3),
    folds: np.ndarray | None = None,
    skipped: int = 0,
) -> VerificationReport:
    """10-fold accuracy (mean +- std), AUC, EER, TAR at each FAR and the deploy thresholds.

    ``scores`` (N,) or (n_folds, N) similarities, ``issame`` (N,) bools, ``folds`` (N,) fold ids
    (default: ``n_folds`` contiguous runs), ``skipped`` pairs left out upstream (reported).
    """
    issame = np.asarray(issame, dtype=bool).ravel()
    scores = np.asarray(scores, dtype=np.float64)
    n = issame.size
    if folds is None:
        folds = contiguous_folds(n, n_folds)
    folds = np.asarray(folds).ravel()
    if folds.size != n:
        raise ValueError(f"folds has {folds.size} entries, issame has {n}")
    fold_ids = np.unique(folds)
    if len(fold_ids) < 2:
        raise ValueError(f"the k-fold protocol needs >= 2 folds, got fold ids {fold_ids.tolist()}")
    if scores.ndim == 1:
        per_fold = None
        held_out = scores
    elif scores.ndim == 2 and scores.shape == (len(fold_ids), n):
        per_fold = scores
        held_out = scores[np.searchsorted(fold_ids, folds), np.arange(n)]
    else:
        raise ValueError(
            f"scores must have shape ({n},) or ({len(fold_ids)}, {n}), got {scores.shape}"
        )
    if held_out.size != n:
        raise ValueError(f"scores has {held_out.size} values, issame has {n}")
    accuracies, thresholds = [], []
    for row, fold in enumerate(fold_ids):
        test = folds == fold
        fold_scores = held_out if per_fold is None else per_fold[row]
        threshold, _ = best_accuracy_threshold(fold_scores[~test], issame[~test])
        predicted = fold_scores[test] > threshold
        accuracies.append(float((predicted == issame[test]).mean()))
        thresholds.append(threshold)
    negatives = int((~issame).sum())
    tars, far_thresholds = {}, {}
    for far in far_levels(fars, negatives):
        tars[far], far_thresholds[far] = tar_at_far(held_out, issame, far)
    return VerificationReport(
        accuracy_mean=float(np.mean(accuracies)),
        accuracy_std=float(np.std(accuracies)),
        auc=roc_auc(held_out, issame),
        eer=equal_error_rate(held_out, issame),
        tar_at_far=tars,
        threshold=best_accuracy_threshold(held_out, issame)[0],
        threshold_at_far=far_thresholds,
        pairs=n,
        skipped=int(skipped),
        positives=int(issame.sum()),
        negatives=negatives,
        n_folds=len(fold_ids),
        fold_accuracies=accuracies,
        fold_thresholds=thresholds,
    )
