"""BatchNorm, Scale and PReLU as Caffe defines them.

BatchNorm (Ioffe & Szegedy 2015, Caffe's layer) keeps three blobs: running sums of the mean and
the variance and a scale factor ``f``; the statistics used at test time are ``blob0 / f`` and
``blob1 / f`` (0 when ``f == 0``). With ``use_global_stats: false`` (default in TRAIN) the batch
statistics over (N, H, W) normalise the input and the blobs update as
``f <- maf·f + 1``, ``mean <- maf·mean + mu``, ``var <- maf·var + m/(m-1)·sigma²``
(``maf`` = moving_average_fraction, default 0.999; ``m`` = N·H·W). ``y = (x - mu) / sqrt(var +
eps)``, eps default 1e-5. BatchNorm has no affine part: a Scale layer follows it.

Scale: ``y = x * gamma (+ beta)``, gamma of shape ``bottom.shape[axis : axis + num_axes]``
(axis 1, num_axes 1 by default; filler default constant 1) or given as a second bottom.
PReLU (He et al. 2015): ``y = max(0, x) + a * min(0, x)``, one slope per channel (or one shared),
filler default constant 0.25.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from marginface.caffe.fillers import fill
from marginface.caffe.netlayers.base import CaffeLayer, Shape, canonical_axis, sub
from marginface.caffe.prototxt import Message

__all__ = ["BatchNorm", "Scale", "PReLU"]


class BatchNorm(CaffeLayer):
    """Caffe ``BatchNorm``: three buffers (mean sum, variance sum, scale factor of shape (1,))."""

    mean: Tensor
    variance: Tensor
    scale_factor: Tensor

    def __init__(self, layer: Message, phase: str) -> None:
        super().__init__(str(layer.get("name")), str(layer.get("type")))
        p = sub(layer, "batch_norm_param")
        self.use_global_stats = bool(p.get("use_global_stats", phase == "TEST"))
        self.maf = float(p.get("moving_average_fraction", 0.999))
        self.eps = float(p.get("eps", 1e-5))
        for name in ("mean", "variance", "scale_factor"):
            self.register_buffer(name, None)

    def setup(self, shapes: Sequence[Shape]) -> None:
        if len(shapes[0]) < 2:
            raise ValueError(f"{self.where}: expects at least 2-D bottom, got {shapes[0]}")
        c = shapes[0][1]
        self.mean = torch.zeros(c)
        self.variance = torch.zeros(c)
        self.scale_factor = torch.zeros(1)

    def forward(self, x: Tensor) -> tuple[Tensor]:
        c = x.shape[1]
        view = (1, c) + (1,) * (x.dim() - 2)
        if self.use_global_stats:
            f = float(self.scale_factor[0])
            inv = 0.0 if f == 0 else 1.0 / f
            mean, var = self.mean * inv, self.variance * inv
        else:
            dims = [0] + list(range(2, x.dim()))
            mean = x.mean(dim=dims)
            var = (x - mean.view(view)).pow(2).mean(dim=dims)
            # Caffe updates the running sums on every forward that uses batch statistics.
            m = x.numel() // c
            with torch.no_grad():
                correction = m / (m - 1) if m > 1 else 1.0
                self.scale_factor.mul_(self.maf).add_(1.0)
                self.mean.mul_(self.maf).add_(mean.detach())
                self.variance.mul_(self.maf).add_(correction * var.detach())
        return ((x - mean.view(view)) / torch.sqrt(var.view(view) + self.eps),)

    def caffe_blobs(self) -> list[Tensor]:
        return [self.mean, self.variance, self.scale_factor]


class Scale(CaffeLayer):
    """Caffe ``Scale``: learned (one bottom) or given (two bottoms) scale, optional bias."""

    def __init__(self, layer: Message, phase: str) -> None:
        super().__init__(str(layer.get("name")), str(layer.get("type")))
        p = sub(layer, "scale_param")
        self.axis = int(p.get("axis", 1))
        self.num_axes = int(p.get("num_axes", 1))
        self.bias_term = bool(p.get("bias_term", False))
        self.filler = p.get("filler")
        self.bias_filler = p.get("bias_filler")
        self.two_bottoms = len(layer.get_all("bottom")) == 2
        if self.num_axes < -1:
            raise ValueError(f"{self.where}: num_axes {self.num_axes} must be >= -1")
        self.weight: nn.Parameter | None = None
        self.bias: nn.Parameter | None = None

    def _span(self, shape: Shape, ndim_scale: int | None) -> tuple[int, int]:
        axis = canonical_axis(self.axis, len(shape), self.where) if shape else 0
        if ndim_scale is None:
            ndim_scale = len(shape) - axis if self.num_axes == -1 else self.num_axes
        if axis + ndim_scale > len(shape):
            raise ValueError(f"{self.where}: scale spans axes {axis}..{axis + ndim_scale - 1} "
                             f"of a {len(shape)}-D bottom {shape}")
        return axis, ndim_scale

    def setup(self, shapes: Sequence[Shape]) -> None:
        shape = shapes[0]
        if self.two_bottoms:
            axis, n = self._span(shape, len(shapes[1]))
            if tuple(shapes[1]) != tuple(shape[axis:axis + n]):
                raise ValueError(f"{self.where}: scale bottom shape {shapes[1]} does not match "
                                 f"bottom axes {shape[axis:axis + n]}")
            pshape = tuple(shapes[1])
        else:
            axis, n = self._span(shape, None)
            pshape = tuple(shape[axis:axis + n])
            self.weight = nn.Parameter(fill(torch.empty(pshape), self.filler, default_value=1.0,
                                            where=f"{self.where} scale"))
        if self.bias_term:
            self.bias = nn.Parameter(fill(torch.empty(pshape), self.bias_filler,
                                          where=f"{self.where} bias"))

    def forward(self, x: Tensor, scale: Tensor | None = None) -> tuple[Tensor]:
        gamma = scale if scale is not None else self.weight
        assert gamma is not None
        axis, n = self._span(tuple(x.shape), gamma.dim())
        view = (1,) * axis + tuple(gamma.shape) + (1,) * (x.dim() - axis - n)
        y = x * gamma.reshape(view)
        if self.bias is not None:
            y = y + self.bias.reshape(view)
        return (y,)

    def caffe_blobs(self) -> list[Tensor]:
        return [t for t in (self.weight, self.bias) if t is not None]


class PReLU(CaffeLayer):
    """Caffe ``PReLU``: per-channel (or ``channel_shared``) negative slope."""

    def __init__(self, layer: Message, phase: str) -> None:
        super().__init__(str(layer.get("name")), str(layer.get("type")))
        p = sub(layer, "prelu_param")
        self.channel_shared = bool(p.get("channel_shared", False))
        self.filler = p.get("filler")
        self.weight: nn.Parameter | None = None

    def setup(self, shapes: Sequence[Shape]) -> None:
        shape = shapes[0]
        channels = 1 if self.channel_shared or len(shape) < 2 else shape[1]
        self.weight = nn.Parameter(fill(torch.empty(channels), self.filler, default_value=0.25,
                                        where=f"{self.where} slope"))

    def forward(self, x: Tensor) -> tuple[Tensor]:
        assert self.weight is not None
        slope = self.weight
        if x.dim() >= 2 and slope.numel() > 1:
            slope = slope.reshape((1, -1) + (1,) * (x.dim() - 2))
        return (torch.where(x > 0, x, x * slope),)

    def caffe_blobs(self) -> list[Tensor]:
        assert self.weight is not None
        return [self.weight]


