"""Run the IJB-B / IJB-C protocols on a download laid out as insightface's release:

    ROOT/loose_crop/<image>            face images (aligned here from the 5 landmarks)
    ROOT/meta/<name>_face_tid_mid.txt, <name>_template_pair_label.txt, <name>_name_5pts_score.txt
    ROOT/meta/<name>_1N_gallery_G1.csv, _G2.csv, <name>_1N_probe_mixed.csv   (optional: 1:N)

with ``name`` ``ijbb`` or ``ijbc``. Writes report.json and roc.png to ``out_dir``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from marginface.atomic import atomic_write_text
from marginface.data.pairs import ImageItem
from marginface.eval.embed import compute_embeddings
from marginface.eval.ijb.meta import (
    read_1n_templates,
    read_face_tid_mid,
    read_landmarks_scores,
    read_template_pairs,
)
from marginface.eval.ijb.metrics import (
    IJB_FARS,
    ijb_identification,
    tar_at_far_interpolated,
    tar_at_far_nearest,
)
from marginface.eval.ijb.pooling import image_features, template_features
from marginface.eval.plots import plot_roc
from marginface.eval.roc import roc_auc

__all__ = ["evaluate_ijb"]


def _pair_scores(ids: np.ndarray, feats: np.ndarray, t1, t2, labels):
    position = {int(t): i for i, t in enumerate(ids)}
    pairs = zip(t1.tolist(), t2.tolist(), strict=True)
    keep = np.array([a in position and b in position for a, b in pairs], bool)
    rows1 = np.array([position[int(t)] for t in t1[keep]], np.int64)
    rows2 = np.array([position[int(t)] for t in t2[keep]], np.int64)
    scores = np.einsum("nd,nd->n", feats[rows1], feats[rows2])
    return scores, labels[keep].astype(bool), int((~keep).sum())


def evaluate_ijb(
    model: torch.nn.Module,
    root: str | Path,
    out_dir: str | Path | None = None,
    *,
    name: str = "ijbc",
    flip: str | None = "sum",
    norm: str = "quality",
    detector_score: bool = True,
    batch_size: int = 64,
    num_workers: int = 2,
    engine: str = "torch",
    progress: bool = True,
) -> dict[str, Any]:
    """The 1:1 protocol (and 1:N where its CSVs exist); the defaults are insightface's
    (flip summed, norm kept as quality, detector score weighting). Unreadable images are
    dropped and counted; pairs of templates left without images are skipped and counted."""
    if flip not in ("sum", None):
        raise ValueError(f"IJB flip must be 'sum' or None, got {flip!r}")
    start = time.perf_counter()
    root, meta = Path(root), Path(root) / "meta"
    faces = read_face_tid_mid(meta / f"{name}_face_tid_mid.txt")
    marks = read_landmarks_scores(meta / f"{name}_name_5pts_score.txt")
    missing = [n for n in faces.names if n not in marks]
    if missing:
        raise ValueError(
            f"{meta / f'{name}_name_5pts_score.txt'} has no landmarks for {len(missing)} images, "
            f"e.g. {missing[:3]}"
        )
    items = [ImageItem(root / "loose_crop" / n, n, marks[n][0]) for n in faces.names]
    result = compute_embeddings(
        model, items, flip=flip, batch_size=batch_size, num_workers=num_workers,
        progress=progress, skip_bad_images=True, desc=name, engine=engine,
    )
    good = np.array([i not in result.failed for i in range(len(items))], bool)
    detector = np.array([marks[n][1] for n in faces.names]) if detector_score else None
    feats = image_features(
        result.embeddings[good], norm=norm,
        detector_scores=None if detector is None else detector[good],
    )
    ids, templates = template_features(feats, faces.templates[good], faces.medias[good])
    report: dict[str, Any] = {
        "protocol": name, "root": str(root), "images": len(items),
        "skipped_images": len(result.failed), "templates": len(ids),
        "options": {"flip": flip, "norm": norm, "detector_score": detector_score,
                    "engine": engine},
        "alignment": result.methods,
    }
    pairs_file = meta / f"{name}_template_pair_label.txt"
    if pairs_file.is_file():
        scores, same, skipped = _pair_scores(ids, templates, *read_template_pairs(pairs_file))
        report["verification"] = {
            "pairs": int(len(scores)), "skipped_pairs": skipped, "auc": roc_auc(scores, same),
            "tar_at_far_nearest": {str(f): tar_at_far_nearest(scores, same, f) for f in IJB_FARS},
            "tar_at_far_interpolated": {
                str(f): tar_at_far_interpolated(scores, same, f) for f in IJB_FARS
            },
        }
        if out_dir is not None:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            plot_roc(scores, same, Path(out_dir) / "roc.png", title=f"{name.upper()} 1:1")
    csvs = {g: meta / f"{name}_1N_gallery_{g}.csv" for g in ("G1", "G2")}
    probe_csv = meta / f"{name}_1N_probe_mixed.csv"
    if probe_csv.is_file() and all(p.is_file() for p in csvs.values()):
        galleries = {g: read_1n_templates(p) for g, p in csvs.items()}
        report["identification"] = ijb_identification(
            ids, templates, galleries, read_1n_templates(probe_csv)
        )
    report["seconds"] = round(time.perf_counter() - start, 1)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(out_dir) / "report.json", json.dumps(report, indent=2) + "\n")
    return report
