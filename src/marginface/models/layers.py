"""Small building blocks shared by the backbones."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["ConvUnit", "Flatten", "InputCheck"]


class ConvUnit(nn.Sequential):
    """conv (no bias) -> BatchNorm2d -> PReLU (per channel), or without PReLU when ``linear``.

    MobileFaceNet (Chen et al. 2018) puts BN after every conv and PReLU after every non-linear
    one. Children are named ``conv``, ``bn``, ``prelu`` so that the state-dict order is
    conv weight, BN affine + running statistics, PReLU slope.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
        groups: int = 1,
        linear: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels)
        if not linear:
            self.prelu = nn.PReLU(out_channels)


class Flatten(nn.Module):
    """(N, C, 1, 1) or (N, C, H, W) -> (N, C*H*W)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1)


class InputCheck(nn.Module):
    """Raises ValueError when an image batch is not (N, 3, H, W) at the model's input size.

    Without it a 112x112 batch through a 112x96 MobileFaceNet would silently give a wrong-sized
    embedding (the GDConv would slide). A leaf module, so graph tracing keeps it as one call.
    """

    def __init__(self, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.input_size = (int(input_size[0]), int(input_size[1]))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != self.input_size:
            raise ValueError(
                f"images must have shape (N, 3, {self.input_size[0]}, {self.input_size[1]}), "
                f"got {tuple(x.shape)}"
            )
        return x
