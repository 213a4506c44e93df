"""Identification (1:N) metrics from a probe x gallery-identity score matrix.

Closed set: the CMC curve, ``CMC(r)`` = fraction of mated probes whose mate is among the ``r``
best-scoring identities (ties counted against the mate: rank = 1 + #identities scoring >= the
mate's score, other than the mate).
Open set (Grother et al., NIST IR 8238 / FRVT 1:N): at threshold ``t`` a probe's candidates are
those scoring above ``t`` (``score > t``). FPIR(t) = fraction of non-mated probes whose best score
is > t; TPIR(t) = fraction of mated probes whose mate is rank 1 with a score > t; FNIR = 1 - TPIR.
The threshold for a chosen FPIR follows :func:`marginface.eval.roc.threshold_at_far`: with
``k = floor(FPIR * n)`` non-mated probes allowed through, it is the (k+1)-th highest non-mated
best score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from marginface.eval.roc import threshold_at_far

__all__ = [
    "mate_ranks",
    "cmc_curve",
    "open_set_scores",
    "fpir_fnir_at",
    "threshold_at_fpir",
    "tpir_at_fpir",
    "det_curve",
    "IdentificationReport",
    "identification_report",
]


def _matrix(scores: np.ndarray, probe_labels: np.ndarray, gallery_labels: np.ndarray):
    scores = np.asarray(scores, dtype=np.float64)
    probe_labels, gallery_labels = np.asarray(probe_labels), np.asarray(gallery_labels)
    if scores.ndim != 2 or scores.shape != (len(probe_labels), len(gallery_labels)):
        raise ValueError(
            f"scores {scores.shape} must be (probes {len(probe_labels)}, gallery "
            f"{len(gallery_labels)})"
        )
    if len(set(gallery_labels.tolist())) != len(gallery_labels):
        raise ValueError("gallery_labels must be unique (one template per identity)")
    return scores, probe_labels, gallery_labels


def mate_ranks(scores: np.ndarray, probe_labels: np.ndarray, gallery_labels: np.ndarray):
    """1-based rank of each probe's mate (0 for a non-mated probe: no mate in the gallery)."""
    scores, probe_labels, gallery_labels = _matrix(scores, probe_labels, gallery_labels)
    is_mate = probe_labels[:, None] == gallery_labels[None, :]
    mated = is_mate.any(1)
    mate_score = np.where(is_mate, scores, -np.inf).max(1)
    beaten = ((scores >= mate_score[:, None]) & ~is_mate).sum(1)
    return np.where(mated, 1 + beaten, 0)


def cmc_curve(ranks: np.ndarray, max_rank: int | None = None) -> np.ndarray:
    """``cmc[r-1]`` = fraction of mated probes (rank > 0) with rank <= r, r = 1..max_rank."""
    ranks = np.asarray(ranks)
    mated = ranks[ranks > 0]
    if mated.size == 0:
        raise ValueError("the CMC needs at least one mated probe")
    max_rank = int(max_rank or mated.max())
    return np.array([(mated <= r).mean() for r in range(1, max_rank + 1)])


def open_set_scores(
    scores: np.ndarray, probe_labels: np.ndarray, gallery_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(mated, nonmated)``: each mated probe's mate score where the mate is rank 1, else -inf
    (it can never be a true positive); each non-mated probe's best score."""
    ranks = mate_ranks(scores, probe_labels, gallery_labels)
    scores, probe_labels, gallery_labels = _matrix(scores, probe_labels, gallery_labels)
    is_mate = probe_labels[:, None] == gallery_labels[None, :]
    mate_score = np.where(is_mate, scores, -np.inf).max(1)
    mated = np.where(ranks[ranks > 0] == 1, mate_score[ranks > 0], -np.inf)
    return mated, scores[ranks == 0].max(1) if scores.shape[1] else np.zeros(0)


def fpir_fnir_at(mated: np.ndarray, nonmated: np.ndarray, threshold: float) -> tuple[float, float]:
    """``(FPIR, FNIR)`` at ``threshold`` (accepted iff score > threshold)."""
    return float((np.asarray(nonmated) > threshold).mean()), float(
        1.0 - (np.asarray(mated) > threshold).mean()
    )


def threshold_at_fpir(nonmated: np.ndarray, fpir: float) -> float:
    """The lowest threshold with FPIR <= ``fpir`` (see the module docstring)."""
    nonmated = np.asarray(nonmated, dtype=np.float64)
    return threshold_at_far(nonmated, np.zeros(nonmated.shape, dtype=bool), fpir)


def tpir_at_fpir(mated: np.ndarray, nonmated: np.ndarray, fpir: float) -> tuple[float, float]:
    """``(TPIR, threshold)`` at the threshold for ``fpir``."""
    threshold = threshold_at_fpir(nonmated, fpir)
    mated = np.asarray(mated)
    if mated.size == 0:
        raise ValueError("TPIR needs at least one mated probe")
    return float((mated > threshold).mean()), threshold


def det_curve(mated: np.ndarray, nonmated: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpir, fnir, thresholds)`` at every distinct non-mated score and -inf (FPIR falling)."""
    mated, nonmated = np.asarray(mated, np.float64), np.asarray(nonmated, np.float64)
    thresholds = np.concatenate([[-np.inf], np.unique(nonmated)])
    high = np.sort(nonmated)
    fpir = 1.0 - np.searchsorted(high, thresholds, side="right") / max(high.size, 1)
    tp = np.sort(mated)
    fnir = np.searchsorted(tp, thresholds, side="right") / max(tp.size, 1)
    return fpir, fnir, thresholds


@dataclass
class IdentificationReport:
    """Closed- and open-set figures of one probe set against one gallery."""

    mated: int
    nonmated: int
    gallery: int
    cmc: dict[str, float]
    tpir_at_fpir: dict[str, float] = field(default_factory=dict)
    threshold_at_fpir: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def identification_report(
    scores: np.ndarray,
    probe_labels: np.ndarray,
    gallery_labels: np.ndarray,
    *,
    ranks: Sequence[int] = (1, 5, 10),
    fpirs: Sequence[float] = (0.1, 0.01),
) -> IdentificationReport:
    """CMC at ``ranks`` (NaN without mated probes); TPIR and its threshold at each ``fpir``
    (only with both mated and non-mated probes)."""
    found = mate_ranks(scores, probe_labels, gallery_labels)
    # no mated probe (e.g. every one unreadable): the rates are undefined, reported as NaN
    curve = cmc_curve(found, max(ranks)) if (found > 0).any() else np.full(max(ranks), np.nan)
    mated, nonmated = open_set_scores(scores, probe_labels, gallery_labels)
    report = IdentificationReport(
        int((found > 0).sum()), int((found == 0).sum()), len(gallery_labels),
        {str(r): float(curve[r - 1]) for r in ranks},
    )
    if nonmated.size and mated.size:
        for fpir in fpirs:
            tpir, threshold = tpir_at_fpir(mated, nonmated, fpir)
            report.tpir_at_fpir[str(fpir)] = tpir
            report.threshold_at_fpir[str(fpir)] = threshold
    return report
