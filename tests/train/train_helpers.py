"""Tiny stand-ins for fast trainer tests: a small CNN backbone and a CosFace-style head.

They exist only so that the trainer's tests run in seconds; shipped configs use
``marginface.models.create_model`` and ``marginface.heads``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TinyNet(nn.Module):
    """conv(3->8, s2) -> PReLU -> conv(8->16, s2) -> BN -> PReLU -> mean pool -> linear(16->D)."""

    def __init__(self, embedding_dim: int = 16, batch_norm: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.act1 = nn.PReLU(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(16) if batch_norm else nn.Identity()
        self.act2 = nn.PReLU(16)
        self.fc = nn.Linear(16, embedding_dim)
        self.poison_after: int | None = None  # NaN from this many forward calls on (tests)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += int(self.training)
        y = self.act2(self.bn(self.conv2(self.act1(self.conv1(x)))))
        out = self.fc(y.mean(dim=(2, 3)))
        if self.training and self.poison_after is not None and self.calls > self.poison_after:
            out = out * float("nan")
        return out


class TinyCosFace(nn.Module):
    """Target logit s*(cos - m); for trainer tests only (real heads: marginface.heads)."""

    def __init__(self, embedding_dim: int, num_classes: int, scale: float = 16.0,
                 margin: float = 0.2) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.scale, self.margin = scale, margin
        self.weight = nn.Parameter(torch.randn(num_classes, embedding_dim) * 0.01)

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = F.linear(F.normalize(embeddings), F.normalize(self.weight))
        cos = cos - self.margin * F.one_hot(labels, self.num_classes)
        return F.cross_entropy(self.scale * cos, labels)
