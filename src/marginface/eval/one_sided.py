"""Rates at a given threshold, and what a pair set with only one kind of pair allows.

At a threshold ``T`` (same iff ``score > T``, as everywhere in :mod:`marginface.eval.roc`):
accuracy is the fraction of pairs decided right, TAR the fraction of same pairs accepted (defined
when there is a same pair) and FAR the fraction of different pairs accepted (defined when there is
a different pair).

A set with only same pairs (insightface's test ``small_lfw.bin``) or only different pairs cannot
give the k-fold accuracy (any threshold outside the scores is "perfect" on the training folds, so
no threshold is learned), the ROC, AUC, EER or TAR at a FAR (FAR needs different pairs, TAR same
pairs). :func:`one_sided_report` says so and gives what is defined: the rates at a given
threshold and the spread of the scores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["ThresholdRates", "OneSidedReport", "rates_at_threshold", "one_sided_report"]


@dataclass(frozen=True)
class ThresholdRates:
    """Accuracy, TAR and FAR of ``score > threshold``; None where the set has no such pair."""

    threshold: float
    accuracy: float
    tar: float | None
    far: float | None

    def summary(self) -> str:
        def rate(value: float | None) -> str:
            return "n/a" if value is None else f"{100 * value:.2f}%"

        return (f"at threshold {self.threshold:.4f}: accuracy {100 * self.accuracy:.2f}%, "
                f"TAR {rate(self.tar)}, FAR {rate(self.far)}")


def rates_at_threshold(scores: np.ndarray, issame: np.ndarray, threshold: float) -> ThresholdRates:
    """The rates of ``score > threshold`` on these pairs (``threshold`` finite)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    issame = np.asarray(issame, dtype=bool).ravel()
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    if scores.size == 0 or scores.shape != issame.shape:
        raise ValueError(f"need one score per pair, got {scores.size} scores, {issame.size} pairs")
    accepted = scores > threshold
    same, different = accepted[issame], accepted[~issame]
    return ThresholdRates(
        threshold=float(threshold),
        accuracy=float((accepted == issame).mean()),
        tar=float(same.mean()) if same.size else None,
        far=float(different.mean()) if different.size else None,
    )


@dataclass
class OneSidedReport:
    """What a pair set of one kind allows; ``not_computed`` names each metric left out and why.

    Has the ``to_dict()`` / ``summary()`` of :class:`marginface.eval.verification.
    VerificationReport`; the metrics that need both kinds are None.
    """

    pairs: int
    positives: int
    negatives: int
    skipped: int
    score_min: float
    score_mean: float
    score_max: float
    at_threshold: ThresholdRates | None
    not_computed: dict[str, str] = field(default_factory=dict)
    accuracy_mean: None = None
    auc: None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["one_sided"] = True
        return out

    def summary(self) -> str:
        kind = "same" if self.positives else "different"
        text = (f"{self.pairs} pairs, all {kind} ({self.skipped} skipped): scores "
                f"{self.score_min:.4f} .. {self.score_max:.4f} (mean {self.score_mean:.4f}); ")
        if self.at_threshold is not None:
            text += self.at_threshold.summary() + "; "
        else:
            text += "give --threshold T for the accuracy at T; "
        return text + "not computed: " + ", ".join(self.not_computed)


def one_sided_report(scores: np.ndarray, issame: np.ndarray, *, threshold: float | None = None,
                     skipped: int = 0) -> OneSidedReport:
    """The report of a set whose pairs are all same or all different (see the module doc)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    issame = np.asarray(issame, dtype=bool).ravel()
    positives = int(issame.sum())
    negatives = int(issame.size - positives)
    if positives and negatives:
        raise ValueError("one_sided_report is for sets of one kind; this one has both")
    missing = "different" if positives else "same"
    why = f"needs {missing} pairs too (the set has only {'same' if positives else 'different'})"
    not_computed = {
        "k-fold accuracy": f"no threshold can be learned: {why}",
        "ROC, AUC, EER": why,
        "TAR at FAR": why,
    }
    if threshold is None:
        not_computed["accuracy at a threshold"] = "no threshold given"
    rates = None if threshold is None else rates_at_threshold(scores, issame, threshold)
    return OneSidedReport(
        pairs=int(issame.size), positives=positives, negatives=negatives, skipped=int(skipped),
        score_min=float(scores.min()), score_mean=float(scores.mean()),
        score_max=float(scores.max()), at_threshold=rates, not_computed=not_computed)
