"""ROC, CMC and DET figures (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from marginface.atomic import atomic_path
from marginface.eval.roc import roc_curve

__all__ = ["plot_roc", "plot_cmc", "plot_det"]


def plot_roc(
    scores: np.ndarray, issame: np.ndarray, path: str | Path, *, title: str = "ROC"
) -> Path:
    """Save the ROC (TAR against FAR, log-scaled FAR axis) of ``scores`` as an image."""
    plt, figure, axis = _figure()
    fpr, tpr, _ = roc_curve(scores, issame)
    negatives = int((~np.asarray(issame, dtype=bool)).sum())
    floor = 1.0 / max(negatives, 1)
    axis.plot(np.maximum(fpr, floor / 2), tpr, lw=1.5)
    axis.set_xscale("log")
    axis.set_xlim(floor / 2, 1.0)
    axis.set_ylim(max(0.0, float(tpr[np.searchsorted(fpr, floor)]) - 0.05), 1.001)
    axis.set_xlabel("false accept rate (FAR)")
    axis.set_ylabel("true accept rate (TAR)")
    return _save(plt, figure, axis, path, title)


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 4), dpi=100)
    return plt, figure, axis


def _save(plt, figure, axis, path: str | Path, title: str) -> Path:
    axis.set_title(title)
    axis.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:  # the format from the real name: the temporary one ends .tmp
        figure.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    plt.close(figure)
    return path


def plot_cmc(cmc: np.ndarray, path: str | Path, *, title: str = "CMC") -> Path:
    """Save the CMC curve (identification rate against rank, ``cmc[r-1]`` at rank r)."""
    plt, figure, axis = _figure()
    ranks = np.arange(1, len(cmc) + 1)
    axis.plot(ranks, cmc, marker="o" if len(cmc) <= 20 else None, lw=1.5)
    axis.set_xlabel("rank")
    axis.set_ylabel("identification rate")
    axis.set_ylim(max(0.0, float(np.min(cmc)) - 0.05), 1.001)
    return _save(plt, figure, axis, path, title)


def plot_det(fpir: np.ndarray, fnir: np.ndarray, path: str | Path, *, title: str = "DET") -> Path:
    """Save the open-set DET curve: FNIR against FPIR, both log-scaled."""
    plt, figure, axis = _figure()
    floor = 1.0 / max(len(fpir), 1) / 2  # zero rates drawn at half the smallest step
    axis.plot(np.maximum(fpir, floor), np.maximum(fnir, floor), lw=1.5, drawstyle="steps-post")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("false positive identification rate (FPIR)")
    axis.set_ylabel("false negative identification rate (FNIR)")
    return _save(plt, figure, axis, path, title)
