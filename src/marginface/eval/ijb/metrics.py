"""IJB metrics: 1:1 TAR at FAR 1e-6 ... 1e-1 from the template pairs' ROC, and 1:N
identification of probe templates against galleries G1 and G2, averaged.

TAR at FAR, two conventions over the ROC of :func:`marginface.eval.roc.roc_curve` (its points
are those of sklearn's ``roc_curve``, which insightface uses):
- nearest: the TPR of the ROC point whose FPR is nearest to the FAR (the first of equals, i.e.
  the lowest TPR of a vertical run), as insightface's IJB-B/C evaluation reports it;
- interpolated: the TPR linearly interpolated at exactly that FAR along the ROC's upper
  envelope (a vertical run contributes its highest point).
1:N: the NIST open-set definitions of :mod:`marginface.eval.identification` (non-mated probes
are the probe templates whose subject is not in the gallery). insightface's 1:N script instead
thresholds on all non-mate similarities of mated probes, so its "TPIR at FPIR" is not comparable.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from marginface.eval.identification import identification_report
from marginface.eval.roc import roc_curve

__all__ = ["IJB_FARS", "tar_at_far_nearest", "tar_at_far_interpolated", "ijb_identification"]

IJB_FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def tar_at_far_nearest(scores: np.ndarray, labels: np.ndarray, far: float) -> float:
    """TPR of the ROC point with FPR nearest to ``far`` (insightface's IJB convention)."""
    fpr, tpr, _ = roc_curve(scores, np.asarray(labels).astype(bool))
    return float(tpr[int(np.argmin(np.abs(fpr - far)))])


def tar_at_far_interpolated(scores: np.ndarray, labels: np.ndarray, far: float) -> float:
    """TPR linearly interpolated at FPR = ``far`` along the ROC's upper envelope."""
    fpr, tpr, _ = roc_curve(scores, np.asarray(labels).astype(bool))
    top = np.r_[fpr[1:] != fpr[:-1], True]  # the last (highest) point of each FPR value
    return float(np.interp(far, fpr[top], tpr[top]))


def _lookup(ids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``wanted`` templates in ``ids``, and the mask of those that have features."""
    position = {int(t): i for i, t in enumerate(ids)}
    found = np.array([int(t) in position for t in wanted], bool)
    return np.array([position[int(t)] for t in wanted[found]], np.int64), found


def ijb_identification(
    template_ids: np.ndarray,
    features: np.ndarray,
    galleries: dict[str, tuple[np.ndarray, np.ndarray]],
    probes: tuple[np.ndarray, np.ndarray],
    *,
    ranks: Sequence[int] = (1, 5, 10),
    fpirs: Sequence[float] = (0.1, 0.01),
) -> dict:
    """Per gallery (``{"G1": (template_ids, subject_ids), ...}``) and their mean: rank-k
    accuracy of the mated probes and TPIR at each FPIR (templates' normalised ``features``).
    Templates without features (all their images unreadable) are left out and counted in
    ``skipped_templates``."""
    probe_rows, probe_found = _lookup(template_ids, probes[0])
    result: dict = {}
    for name, (tids, sids) in galleries.items():
        rows, found = _lookup(template_ids, tids)
        scores = features[probe_rows] @ features[rows].T
        report = identification_report(
            scores, probes[1][probe_found], sids[found], ranks=ranks, fpirs=fpirs
        )
        result[name] = report.to_dict()
        result[name]["skipped_templates"] = int((~probe_found).sum() + (~found).sum())
    names = list(galleries)
    result["mean"] = {  # NaN where a gallery has no figure (no mated / non-mated probes)
        key: {
            level: float(np.mean([result[n][key].get(level, np.nan) for n in names]))
            for level in dict.fromkeys(level for n in names for level in result[n][key])
        }
        for key in ("cmc", "tpir_at_fpir")
    }
    return result
