"""MobileFaceNet (Chen et al., "MobileFaceNets: Efficient CNNs for Accurate Real-Time Face
Verification on Mobile Devices", 2018) and insightface's wider variant ("mbf").

Paper table (input 112x112; 112x96 gives a 7x6 last map, so GDConv is 7x6):

====================  ===  ===  ===  ===
operator               t    c    n    s
====================  ===  ===  ===  ===
conv3x3                -    64   1    2
depthwise conv3x3      -    64   1    1
bottleneck             2    64   5    2
bottleneck             4    128  1    2
bottleneck             2    128  6    1
bottleneck             4    128  1    2
bottleneck             2    128  2    1
conv1x1                -    512  1    1
linear GDConv7x7       -    512  1    1
linear conv1x1         -    128  1    1
====================  ===  ===  ===  ===

BN after every conv, PReLU after every non-linear one; a bottleneck is expand 1x1 (t times the
input channels) -> depthwise 3x3 (stride s) -> linear project 1x1, with a residual connection
when the stride is 1 and the channel count is kept.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from marginface.models.layers import ConvUnit, Flatten, InputCheck

__all__ = ["BOTTLENECK_SETTINGS", "Bottleneck", "Stage", "MobileFaceNet", "MobileFaceNetWide"]

# (expansion t, output channels c, repeats n, first stride s), from the paper's table.
BOTTLENECK_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (2, 64, 5, 2),
    (4, 128, 1, 2),
    (2, 128, 6, 1),
    (4, 128, 1, 2),
    (2, 128, 2, 1),
)


class Bottleneck(nn.Module):
    """Inverted residual: expand 1x1 -> depthwise 3x3 -> linear project 1x1 (+ identity)."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.expand = ConvUnit(in_channels, hidden, 1)
        self.depthwise = ConvUnit(hidden, hidden, 3, stride, 1, groups=hidden)
        self.project = ConvUnit(hidden, out_channels, 1, linear=True)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


def _last_map(input_size: Sequence[int]) -> tuple[int, int]:
    # Four stride-2 stages: 112x112 -> 7x7, 112x96 -> 7x6.
    return input_size[0] // 16, input_size[1] // 16


def _scaled(channels: int, width: float) -> int:
    # Width multiplier rounded to a multiple of 8 (exact for width 1).
    return max(8, int(round(channels * width / 8)) * 8)


class MobileFaceNet(nn.Module):
    """The paper's MobileFaceNet: (N, 3, H, W) -> (N, embedding_dim).

    ``width`` scales every channel count before the embedding (1.0 = the paper).
    Parameters ~0.99M and multiply-adds ~221M at 112x112 with a 128-d embedding.
    """

    def __init__(
        self,
        input_size: Sequence[int] = (112, 112),
        embedding_dim: int = 128,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        if not isinstance(width, (int, float)) or width <= 0:
            raise ValueError(f"width must be a positive number, got {width!r}")
        stem = _scaled(64, width)
        self.check = InputCheck(tuple(input_size))
        self.conv1 = ConvUnit(3, stem, 3, 2, 1)
        self.dw_conv1 = ConvUnit(stem, stem, 3, 1, 1, groups=stem)
        blocks: list[nn.Module] = []
        channels = stem
        for t, c, n, s in BOTTLENECK_SETTINGS:
            out = _scaled(c, width)
            for i in range(n):
                blocks.append(Bottleneck(channels, channels * t, out, s if i == 0 else 1))
                channels = out
        self.blocks = nn.Sequential(*blocks)
        head = _scaled(512, width)
        self.conv2 = ConvUnit(channels, head, 1)
        # Global depthwise conv: one kernel the size of the last feature map, linear.
        self.gdconv = ConvUnit(head, head, _last_map(input_size), groups=head, linear=True)
        self.embedding = ConvUnit(head, embedding_dim, 1, linear=True)
        self.flatten = Flatten()
        _init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.dw_conv1(self.conv1(self.check(x))))
        return self.flatten(self.embedding(self.gdconv(self.conv2(x))))


class Stage(nn.Sequential):
    """``n`` residual bottlenecks keeping ``channels`` with ``hidden`` expanded channels."""

    def __init__(self, channels: int, hidden: int, n: int) -> None:
        super().__init__(*(Bottleneck(channels, hidden, channels, 1) for _ in range(n)))


class MobileFaceNetWide(nn.Module):
    """insightface's "mbf": a MobileFaceNet with ``scale`` times the trunk width.

    Structure (facts of insightface's arcface_torch get_mbf, blocks (1, 4, 6, 2), scale 2):
    conv3x3 s2 to 64s; a grouped 3x3 conv (64 groups) when blocks[0] == 1, else blocks[0]
    residual bottlenecks with 128 hidden; then [down bottleneck s2 -> residual stage] three times
    with (out, hidden of the down block, hidden of the stage) = (64s, 128, 128), (128s, 256, 256),
    (128s, 512, 256); conv1x1 to 512; linear GDConv; Linear(512, D, no bias) + BatchNorm1d.
    ~2.06M params and ~0.44G multiply-adds at 112x112, 512-d.
    """

    def __init__(
        self,
        input_size: Sequence[int] = (112, 112),
        embedding_dim: int = 512,
        blocks: Sequence[int] = (1, 4, 6, 2),
        scale: int = 2,
    ) -> None:
        super().__init__()
        if len(blocks) != 4 or any(int(b) < 1 for b in blocks):
            raise ValueError(f"blocks must be 4 positive counts, got {blocks!r}")
        if not isinstance(scale, int) or scale < 1:
            raise ValueError(f"scale must be a positive int, got {scale!r}")
        c1, c2 = 64 * scale, 128 * scale
        self.check = InputCheck(tuple(input_size))
        layers: list[nn.Module] = [ConvUnit(3, c1, 3, 2, 1)]
        if blocks[0] == 1:
            layers.append(ConvUnit(c1, c1, 3, 1, 1, groups=64))
        else:
            layers.append(Stage(c1, 128, blocks[0]))
        layers += [
            Bottleneck(c1, 128, c1, 2),
            Stage(c1, 128, blocks[1]),
            Bottleneck(c1, 256, c2, 2),
            Stage(c2, 256, blocks[2]),
            Bottleneck(c2, 512, c2, 2),
            Stage(c2, 256, blocks[3]),
        ]
        self.trunk = nn.Sequential(*layers)
        self.conv_sep = ConvUnit(c2, 512, 1)
        self.gdconv = ConvUnit(512, 512, _last_map(input_size), groups=512, linear=True)
        self.flatten = Flatten()
        self.fc = nn.Linear(512, embedding_dim, bias=False)
        self.features = nn.BatchNorm1d(embedding_dim)
        _init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.gdconv(self.conv_sep(self.trunk(self.check(x))))
        return self.features(self.fc(self.flatten(x)))


def _init_weights(model: nn.Module) -> None:
    # He init for convs and linears (fan_out), BN to identity: the usual MobileNet start.
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
