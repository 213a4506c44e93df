"""SphereNet-20/36/64: the residual nets of SphereFace (Liu et al., "SphereFace: Deep Hypersphere
Embedding for Face Recognition", 2017), as in the shared Caffe nets.

Input 112x96. Four stages of 64/128/256/512 channels; each opens with conv3x3 stride 2 + PReLU
and then holds residual units of two conv3x3 + PReLU (output = input + unit). Units per stage:
20 -> (1, 2, 4, 1), 36 -> (2, 4, 8, 2), 64 -> (3, 8, 16, 3). fc5 is an InnerProduct to 512.
Convolutions carry a bias as in Caffe. ``batch_norm=True`` follows the combined-margin
SphereNet-36 (spherenet36_model.prototxt): BN (+Scale) after every conv, then BN -> dropout (0.4)
before fc5 and BN after it; ``batch_norm=False`` is the original SphereFace/AM-Softmax net
(sphereface_deploy.prototxt, face_train_test.prototxt).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from marginface.models.layers import InputCheck

__all__ = ["SPHERENET_LAYERS", "STAGE_CHANNELS", "SphereConv", "SphereUnit", "SphereNet"]

SPHERENET_LAYERS: dict[int, tuple[int, int, int, int]] = {
    20: (1, 2, 4, 1),
    36: (2, 4, 8, 2),
    64: (3, 8, 16, 3),
}
STAGE_CHANNELS = (64, 128, 256, 512)


class SphereConv(nn.Sequential):
    """Caffe conv3x3 (with bias) [-> BatchNorm + Scale, one affine BN here] -> PReLU."""

    def __init__(self, cin: int, cout: int, stride: int, batch_norm: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=True)
        if batch_norm:
            self.bn = nn.BatchNorm2d(cout)
        self.prelu = nn.PReLU(cout)


class SphereUnit(nn.Module):
    """x + PReLU(conv(PReLU(conv(x)))): the Eltwise SUM residual unit of SphereFace."""

    def __init__(self, channels: int, batch_norm: bool) -> None:
        super().__init__()
        self.conv_a = SphereConv(channels, channels, 1, batch_norm)
        self.conv_b = SphereConv(channels, channels, 1, batch_norm)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv_b(self.conv_a(x))


class SphereNet(nn.Module):
    """(N, 3, H, W) -> (N, embedding_dim) (the fc5 feature)."""

    def __init__(
        self,
        input_size: Sequence[int] = (112, 96),
        embedding_dim: int = 512,
        layers: Sequence[int] = SPHERENET_LAYERS[20],
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or any(int(n) < 0 for n in layers):
            raise ValueError(f"layers must be 4 non-negative unit counts, got {layers!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.check = InputCheck(tuple(input_size))
        stages: list[nn.Module] = []
        channels = 3
        for width, units in zip(STAGE_CHANNELS, layers, strict=True):
            stage = [SphereConv(channels, width, 2, batch_norm)]
            stage += [SphereUnit(width, batch_norm) for _ in range(int(units))]
            stages.append(nn.Sequential(*stage))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.bn_pre_fc5 = nn.BatchNorm2d(channels) if batch_norm else nn.Identity()
        self.dropout = nn.Dropout(float(dropout))
        self.flatten = nn.Flatten(1)
        height, width = input_size[0] // 16, input_size[1] // 16
        self.fc5 = nn.Linear(channels * height * width, embedding_dim)
        self.bn5 = nn.BatchNorm1d(embedding_dim) if batch_norm else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        # Caffe fillers: xavier for the strided convs and fc5, gaussian 0.01 inside units, bias 0.
        for module in self.modules():
            if isinstance(module, SphereConv):
                if module.conv.stride == (2, 2):
                    nn.init.xavier_uniform_(module.conv.weight)
                else:
                    nn.init.normal_(module.conv.weight, 0.0, 0.01)
                nn.init.zeros_(module.conv.bias)
        nn.init.xavier_uniform_(self.fc5.weight)
        nn.init.zeros_(self.fc5.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.dropout(self.bn_pre_fc5(self.stages(self.check(x))))
        return self.bn5(self.fc5(self.flatten(x)))
