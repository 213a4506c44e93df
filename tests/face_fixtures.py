"""Tiny deterministic face models and image folders shared by tests/eval and tests/identify."""

from __future__ import annotations

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
