"""Evaluate a model on an identification set (gallery images + mated / non-mated probes):
embed through the one embedding path, score every probe against every gallery identity, write
report.json (CMC, TPIR and threshold at FPIR), cmc.png and det.png.

``marginface identify --report report.json --fpir F`` reads ``threshold_at_fpir`` from it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from marginface.atomic import atomic_write_text
from marginface.data.lfw_identification import IdentificationSet, lfw_identification_set
from marginface.eval.embed import compute_embeddings
from marginface.eval.identification import det_curve, identification_report, open_set_scores
from marginface.eval.model_report import load_model_file
from marginface.eval.plots import plot_cmc, plot_det
from marginface.identify.search import normalize_rows
from marginface.models.io import model_fingerprint

__all__ = ["THRESHOLD_FPIRS", "evaluate_identification", "run_lfw_identification"]

THRESHOLD_FPIRS = (0.1, 0.05, 0.01, 0.005, 0.001)


def evaluate_identification(
    model: torch.nn.Module,
    dataset: IdentificationSet,
    out_dir: str | Path | None = None,
    *,
    flip: str | None = "concat",
    batch_size: int = 64,
    num_workers: int = 2,
    engine: str = "torch",
    progress: bool = True,
    ranks: Sequence[int] = (1, 5, 10),
    fpirs: Sequence[float] = (0.1, 0.01),
) -> dict[str, Any]:
    """The report (a dict, as written to ``out_dir/report.json`` when ``out_dir`` is given).

    An unreadable gallery image drops its identity and that identity's probes; an unreadable
    probe is dropped; both are counted in ``skipped``.
    """
    start = time.perf_counter()
    items = dataset.gallery + dataset.probes
    result = compute_embeddings(
        model, items, flip=flip, batch_size=batch_size, num_workers=num_workers,
        progress=progress, skip_bad_images=True, desc="identification", engine=engine,
    )
    n = len(dataset.gallery)
    lost = {dataset.gallery_labels[i] for i in result.failed if i < n}
    keep_g = [i for i in range(n) if i not in result.failed]
    keep_p = [
        n + j for j, label in enumerate(dataset.probe_labels)
        if n + j not in result.failed and label not in lost
    ]
    unit = normalize_rows(result.embeddings).numpy()
    scores = unit[keep_p] @ unit[keep_g].T
    labels = np.array(dataset.gallery_labels + dataset.probe_labels)
    gallery_labels, probe_labels = labels[keep_g], labels[keep_p]
    levels = sorted(set(fpirs) | set(THRESHOLD_FPIRS), reverse=True)
    report = identification_report(scores, probe_labels, gallery_labels, ranks=ranks, fpirs=levels)
    cmc = report.cmc
    data: dict[str, Any] = {
        "protocol": dataset.name,
        "model": getattr(getattr(model, "config", None), "name", type(model).__name__),
        "fingerprint": model_fingerprint(model),
        "flip": flip,
        "engine": engine,
        "gallery": report.gallery,
        "mated": report.mated,
        "nonmated": report.nonmated,
        "skipped": {"images": len(result.failed), "identities": sorted(lost)},
        "alignment": result.methods,
        "cmc": cmc,
        "tpir_at_fpir": {str(f): report.tpir_at_fpir[str(f)] for f in fpirs},
        "threshold_at_fpir": report.threshold_at_fpir,
        "threshold_rule": "accepted iff score > threshold (cosine)",
        "seconds": round(time.perf_counter() - start, 1),
    }
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "report.json", json.dumps(data, indent=2) + "\n")
        full = identification_report(
            scores, probe_labels, gallery_labels, ranks=range(1, min(50, len(keep_g)) + 1),
            fpirs=(),
        ).cmc
        plot_cmc(np.array(list(full.values())), out_dir / "cmc.png", title=f"CMC {dataset.name}")
        fpir, fnir, _ = det_curve(*open_set_scores(scores, probe_labels, gallery_labels))
        plot_det(fpir, fnir, out_dir / "det.png", title=f"DET {dataset.name}")
    return data


def run_lfw_identification(
    model_file: str | Path,
    lfw_root: str | Path,
    out_dir: str | Path,
    *,
    initials: Sequence[str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """The LFW 1:N protocol (:mod:`marginface.data.lfw_identification`) for a model file;
    ``options`` go to :func:`evaluate_identification`."""
    model = load_model_file(model_file)
    dataset = lfw_identification_set(lfw_root, initials=initials)
    return evaluate_identification(model, dataset, out_dir, **options)
