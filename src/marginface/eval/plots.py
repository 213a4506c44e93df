"""ROC curve figure (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from marginface.atomic import atomic_path
from marginface.eval.roc import roc_curve

__all__ = ["plot_roc"]


def plot_roc(
    scores: np.ndarray, issame: np.ndarray, path: str | Path, *, title: str = "ROC"
) -> Path:
    """Save the ROC (TAR against FAR, log-scaled FAR axis) of ``scores`` as an image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fpr, tpr, _ = roc_curve(scores, issame)
    negatives = int((~np.asarray(issame, dtype=bool)).sum())
    floor = 1.0 / max(negatives, 1)
    figure, axis = plt.subplots(figsize=(5, 4), dpi=100)
    axis.plot(np.maximum(fpr, floor / 2), tpr, lw=1.5)
    axis.set_xscale("log")
    axis.set_xlim(floor / 2, 1.0)
    axis.set_ylim(max(0.0, float(tpr[np.searchsorted(fpr, floor)]) - 0.05), 1.001)
    axis.set_xlabel("false accept rate (FAR)")
    axis.set_ylabel("true accept rate (TAR)")
    axis.set_title(title)
    axis.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:  # the format from the real name: the temporary one ends .tmp
        figure.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    plt.close(figure)
    return path
