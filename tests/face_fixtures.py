"""Tiny deterministic face models, image folders and an IJB-layout writer shared by tests/eval
and tests/identify."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image
from torch import nn


class PoolingModel(nn.Module):
    """Embedding = 8x8 average-pooled pixels (flattened): the same picture -> the same vector."""

    def __init__(self, input_size=(112, 96), template="sphereface_112x96"):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.config = SimpleNamespace(
            input_size=input_size,
            preprocessing=SimpleNamespace(
                mean=(127.5,) * 3,
                std=(128.0,) * 3,
                channel_order="RGB",
                alignment_template=template,
            ),
        )

    def forward(self, x):
        return self.scale * nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)


def make_identities(root: Path, people: int = 6, per_person: int = 3, size=(96, 112)) -> dict:
    """people x per_person noisy copies of one random pattern per person (aligned crops)."""
    rng = np.random.default_rng(0)
    files = {}
    for p in range(people):
        base = rng.integers(0, 256, (4, 4, 3)).astype(np.float64)
        big = np.kron(base, np.ones((size[1] // 4, size[0] // 4, 1)))
        for k in range(per_person):
            noisy = np.clip(big + rng.normal(0, 20, big.shape), 0, 255).astype(np.uint8)
            path = root / f"p{p}" / f"{k}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(noisy).save(path)
            files[(p, k)] = path
    return files


def write_ijb(root: Path, people: list[list[tuple[Path, np.ndarray]]]) -> dict:
    """People (>= 4 images each, with 5 landmarks) -> templates, media, pairs and 1:N CSVs.

    Person i: template 100+i = media 1000+10i (images 0, 1) + media 1001+10i (image 2);
    template 200+i = image 3 (media 2000+10i) and image 4 if any (media 2001+10i).
    Pairs: (100+i, 200+j), label i == j. G1: templates 100+i of the first half of the people,
    G2: the rest; probe_mixed: every 200+i. Detector score of image k: 0.5 + (k % 5) / 10.
    """
    meta = root / "meta"
    (root / "loose_crop").mkdir(parents=True)
    meta.mkdir()
    faces, marks, images = [], [], {}
    k = 0
    for i, person in enumerate(people):
        plan = [(100 + i, 1000 + 10 * i), (100 + i, 1000 + 10 * i), (100 + i, 1001 + 10 * i),
                (200 + i, 2000 + 10 * i), (200 + i, 2001 + 10 * i)]
        for (tid, mid), (path, points) in zip(plan, person[:5], strict=False):
            name = f"{k}.jpg"
            shutil.copy(path, root / "loose_crop" / name)
            score = 0.5 + (k % 5) / 10
            faces.append(f"{name} {tid} {mid}")
            marks.append(" ".join([name, *[f"{v:g}" for v in points.reshape(-1)], f"{score:g}"]))
            images[name] = (tid, mid, score, i)
            k += 1
    n = len(people)
    (meta / "ijbc_face_tid_mid.txt").write_text("\n".join(faces) + "\n")
    (meta / "ijbc_name_5pts_score.txt").write_text("\n".join(marks) + "\n")
    pairs = [f"{100 + i} {200 + j} {int(i == j)}" for i in range(n) for j in range(n)]
    (meta / "ijbc_template_pair_label.txt").write_text("\n".join(pairs) + "\n")
    header = "TEMPLATE_ID,SUBJECT_ID,FILENAME\n"
    for csv_name, tids in (("gallery_G1", range(100, 100 + n // 2)),
                           ("gallery_G2", range(100 + n // 2, 100 + n)),
                           ("probe_mixed", range(200, 200 + n))):
        rows = [f"{t},{images[m][3]},img/{m}" for m in images for t in tids if images[m][0] == t]
        (meta / f"ijbc_1N_{csv_name}.csv").write_text(header + "\n".join(rows) + "\n")
    return images
