"""MTCNN's three networks (Zhang et al., IEEE SPL 2016) as PyTorch modules.

All three take RGB images as float (N, 3, H, W) scaled ``(x - 127.5) * 0.0078125`` in the image's
own axis order (no transposition; see docs/detection.md for how the published Caffe and Keras
weights are mapped onto that layout):

- :class:`PNet` (fully convolutional, 12x12 receptive field, stride 2): face probability map and
  box regression map.
- :class:`RNet` (24x24 crops): face probability and box regression.
- :class:`ONet` (48x48 crops): face probability, box regression and 5 landmarks (x1..x5, y1..y5,
  as fractions of the crop's width and height).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PNet", "RNet", "ONet", "NETWORKS"]


def _conv(cin: int, cout: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k), nn.PReLU(cout)]


class PNet(nn.Module):
    """conv3-10, pool2, conv3-16, conv3-32, then 1x1 heads: face (2) and box offsets (4)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = _conv(3, 10, 3)
        # Caffe pools with ceil_mode: the map sizes must match the published training layout.
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = _conv(10, 16, 3)
        self.conv3, self.prelu3 = _conv(16, 32, 3)
        self.score = nn.Conv2d(32, 2, 1)
        self.bbox = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the face probability (N, H', W') and box offsets (N, 4, H', W')."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return torch.softmax(self.score(x), dim=1)[:, 1], self.bbox(x)


class RNet(nn.Module):
    """conv3-28, pool3/2, conv3-48, pool3/2, conv2-64, fc128, heads: face (2) and box (4)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = _conv(3, 28, 3)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = _conv(28, 48, 3)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = _conv(48, 64, 2)
        self.fc = nn.Linear(64 * 3 * 3, 128)
        self.prelu4 = nn.PReLU(128)
        self.score = nn.Linear(128, 2)
        self.bbox = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, 24, 24) -> face probability (N,), box offsets (N, 4)."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu4(self.fc(self.prelu3(self.conv3(x)).flatten(1)))
        return torch.softmax(self.score(x), dim=1)[:, 1], self.bbox(x)


class ONet(nn.Module):
    """conv3-32, pool, conv3-64, pool, conv3-64, pool, conv2-128, fc256, heads: 2, 4 and 10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = _conv(3, 32, 3)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = _conv(32, 64, 3)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = _conv(64, 64, 3)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = _conv(64, 128, 2)
        self.fc = nn.Linear(128 * 3 * 3, 256)
        self.prelu5 = nn.PReLU(256)
        self.score = nn.Linear(256, 2)
        self.bbox = nn.Linear(256, 4)
        self.landmarks = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(N, 3, 48, 48) -> face probability (N,), box offsets (N, 4), landmarks (N, 10)."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.fc(self.prelu4(self.conv4(x)).flatten(1)))
        return torch.softmax(self.score(x), dim=1)[:, 1], self.bbox(x), self.landmarks(x)


# Prefix of each network's entries in a detector state dict.
NETWORKS: dict[str, type[nn.Module]] = {"pnet": PNet, "rnet": RNet, "onet": ONet}
