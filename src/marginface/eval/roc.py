"""Threshold metrics on similarity scores: best-accuracy threshold, ROC, AUC, EER, TAR at FAR.

Convention everywhere: a pair is declared "same" iff ``score > threshold`` (strict). Scores are
similarities (higher = more alike), e.g. cosine similarity of L2-normalised embeddings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "best_accuracy_threshold",
    "roc_curve",
    "roc_auc",
    "equal_error_rate",
    "threshold_at_far",
    "tar_at_far",
    "far_levels",
]


def _check(scores: np.ndarray, issame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    issame = np.asarray(issame).ravel()
    if scores.shape != issame.shape:
        raise ValueError(f"scores has {scores.size} values, issame has {issame.size}")
    if scores.size == 0:
        raise ValueError("scores is empty: no pairs to evaluate")
    if not np.isfinite(scores).all():
        index = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise ValueError(f"scores[{index}] = {scores[index]} is not finite")
    return scores, issame.astype(bool)


def best_accuracy_threshold(scores: np.ndarray, issame: np.ndarray) -> tuple[float, float]:
    """``(threshold, accuracy)`` maximising accuracy of ``score > threshold`` on these pairs.

    Exact: every cut between consecutive distinct scores is tried; the threshold is the midpoint
    of the cut (the highest score itself when rejecting all, the lowest minus 1 when accepting
    all). Among equally accurate cuts the highest threshold wins (as insightface's scan from the
    smallest distance).
    """
    scores, issame = _check(scores, issame)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], issame[order]
    accepted_same = np.concatenate([[0], np.cumsum(y)])  # top-k accepted, k = 0..n
    accepted_diff = np.concatenate([[0], np.cumsum(~y)])
    correct = accepted_same + (accepted_diff[-1] - accepted_diff)
    valid = np.ones(len(s) + 1, dtype=bool)
    valid[1:-1] = s[:-1] > s[1:]  # cannot cut between equal scores
    correct = np.where(valid, correct, -1)
    k = int(np.argmax(correct))
    if k == 0:
        threshold = s[0]
    elif k == len(s):
        threshold = s[-1] - 1.0
    else:
        threshold = 0.5 * (s[k - 1] + s[k])
    return float(threshold), float(correct[k] / len(s))


def roc_curve(scores: np.ndarray, issame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` from accept-nothing (0, 0) to accept-all (1, 1).

    Point i is the rate of ``score > thresholds[i]``; thresholds are +inf, the distinct scores in
    decreasing order, then -inf.
    """
    scores, issame = _check(scores, issame)
    positives, negatives = int(issame.sum()), int((~issame).sum())
    if positives == 0 or negatives == 0:
        raise ValueError(f"ROC needs both kinds of pairs, got {positives} same, {negatives} diff")
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], issame[order]
    last_of_value = np.flatnonzero(np.r_[s[1:] < s[:-1], True])  # end index of each distinct run
    tp, fp = np.cumsum(y)[last_of_value], np.cumsum(~y)[last_of_value]
    # threshold just below each distinct value accepts it; expressed as the next lower value
    thresholds = np.r_[np.inf, s[last_of_value[:-1] + 1], -np.inf]
    tpr = np.r_[0.0, tp / positives]
    fpr = np.r_[0.0, fp / negatives]
    return fpr, tpr, thresholds


def roc_auc(scores: np.ndarray, issame: np.ndarray) -> float:
    """Area under the ROC (trapezoids; equals P(same score > diff score) + 0.5 P(tie))."""
    fpr, tpr, _ = roc_curve(scores, issame)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def equal_error_rate(scores: np.ndarray, issame: np.ndarray) -> float:
    """The rate where FAR = FRR, interpolated linearly along the ROC segment where they cross."""
    fpr, tpr, _ = roc_curve(scores, issame)
    fnr = 1.0 - tpr
    gap = fpr - fnr  # -1 at accept-nothing, +1 at accept-all
    i = int(np.flatnonzero(gap >= 0)[0])
    if gap[i] == 0 or i == 0:
        return float(fpr[i])
    # gap is linear along the segment from point i-1 to point i
    lam = -gap[i - 1] / (gap[i] - gap[i - 1])
    return float(fpr[i - 1] + lam * (fpr[i] - fpr[i - 1]))


def threshold_at_far(scores: np.ndarray, issame: np.ndarray, far: float) -> float:
    """The lowest threshold whose false accept rate (``score > t`` on diff pairs) is <= ``far``.

    With ``k = floor(far * negatives)`` false accepts allowed it is the (k+1)-th highest score of
    a different pair (-inf when every different pair may be accepted).
    """
    if not (isinstance(far, (int, float)) and 0 < far <= 1):
        raise ValueError(f"far must be in (0, 1], got {far!r}")
    scores, issame = _check(scores, issame)
    negatives = np.sort(scores[~issame])[::-1]
    if negatives.size == 0:
        raise ValueError("threshold_at_far needs at least one different pair")
    k = int(math.floor(far * negatives.size + 1e-9))
    return float(negatives[k]) if k < negatives.size else -math.inf


def tar_at_far(scores: np.ndarray, issame: np.ndarray, far: float) -> tuple[float, float]:
    """``(TAR, threshold)``: true accept rate of same pairs at ``threshold_at_far``."""
    threshold = threshold_at_far(scores, issame, far)
    scores, issame = _check(scores, issame)
    positives = scores[issame]
    if positives.size == 0:
        raise ValueError("tar_at_far needs at least one same pair")
    return float((positives > threshold).mean()), threshold


def far_levels(fars: Sequence[float], negatives: int) -> list[float]:
    """The requested ``fars`` plus lower decades while ``far * negatives >= 1``."""
    levels = sorted({float(f) for f in fars}, reverse=True)
    if not levels:
        return levels
    exponent = math.floor(math.log10(min(levels)) + 1e-9) - 1
    while negatives * 10.0**exponent >= 1.0 - 1e-9:
        levels.append(10.0**exponent)
        exponent -= 1
    return levels
