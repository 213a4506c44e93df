"""IResNet: the improved residual network of ArcFace (Deng et al., "ArcFace: Additive Angular
Margin Loss for Deep Face Recognition", 2019), as used by insightface.

Stem conv3x3 stride 1 (64) + BN + PReLU; four stages of 64/128/256/512 channels, each starting
with stride 2 (112 -> 7); residual unit BN -> conv3x3 -> BN -> PReLU -> conv3x3 (stride) -> BN,
projection shortcut conv1x1 + BN where the shape changes; head BN2d -> dropout -> flatten ->
FC(512) -> BN1d (scale fixed at 1, the "features" layer). Figures at 112x112, 512-d:
r18 24.0M params 2.61G MAdds, r50 43.6M 6.31G, r100 65.2M 12.09G.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from marginface.models.layers import InputCheck

__all__ = ["IRESNET_LAYERS", "STAGE_CHANNELS", "IBasicBlock", "IResNet"]

# Residual units per stage.
IRESNET_LAYERS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
}
STAGE_CHANNELS = (64, 128, 256, 512)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class IBasicBlock(nn.Module):
    """BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN, plus the (projected) input."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = _conv3x3(in_channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.prelu = nn.PReLU(channels)
        self.conv2 = _conv3x3(channels, channels, stride)
        self.bn3 = nn.BatchNorm2d(channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNet(nn.Module):
    """(N, 3, H, W) -> (N, embedding_dim); ``layers`` units per stage, ``dropout`` before FC."""

    def __init__(
        self,
        input_size: Sequence[int] = (112, 112),
        embedding_dim: int = 512,
        layers: Sequence[int] = IRESNET_LAYERS[50],
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ValueError(f"layers must be 4 positive unit counts, got {layers!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.check = InputCheck(tuple(input_size))
        self.conv1 = _conv3x3(3, 64)
        self.bn1 = nn.BatchNorm2d(64)
        self.prelu = nn.PReLU(64)
        channels = 64
        for index, (width, units) in enumerate(zip(STAGE_CHANNELS, layers, strict=True)):
            blocks = [IBasicBlock(channels, width, 2)]
            blocks += [IBasicBlock(width, width, 1) for _ in range(int(units) - 1)]
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
            channels = width
        self.bn2 = nn.BatchNorm2d(channels)
        self.dropout = nn.Dropout(p=float(dropout))
        height, width = input_size[0] // 16, input_size[1] // 16
        self.fc = nn.Linear(channels * height * width, embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # insightface keeps the embedding BN's scale at 1 (only shift and statistics learn).
        nn.init.ones_(self.features.weight)
        self.features.weight.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.prelu(self.bn1(self.conv1(self.check(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn2(x).flatten(1))
        return self.features(self.fc(x))
