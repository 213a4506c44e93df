"""BatchNorm and PReLU as Caffe defines them (Scale is ``marginface.caffe.margin_layers.Scale``).

BatchNorm (Ioffe & Szegedy 2015, Caffe's layer) keeps three blobs: running sums of the mean and
the variance and a scale factor ``f``; the statistics used at test time are ``blob0 / f`` and
``blob1 / f`` (0 when ``f == 0``). With ``use_global_stats: false`` (default in TRAIN) the batch
statistics over (N, H, W) normalise the input and the blobs update as
``f <- maf·f + 1``, ``mean <- maf·mean + mu``, ``var <- maf·var + m/(m-1)·sigma²``
(``maf`` = moving_average_fraction, default 0.999; ``m`` = N·H·W). ``y = (x - mu) / sqrt(var +
eps)``, eps default 1e-5. BatchNorm has no affine part: a Scale layer follows it.

PReLU (He et al. 2015): ``y = max(0, x) + a * min(0, x)``, one slope per channel (or one shared),
filler default constant 0.25.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from marginface.caffe.fillers import fill
from marginface.caffe.layer_types.base import CaffeLayer, Shape, sub
from marginface.caffe.prototxt import Message

__all__ = ["BatchNorm", "PReLU"]


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
        if self.use_global_stats:
            f = float(self.scale_factor[0])
            inv = 0.0 if f == 0 else 1.0 / f
            y = F.batch_norm(x, self.mean * inv, self.variance * inv, training=False,
                             eps=self.eps)
            return (y,)
        # Batch statistics (biased variance) normalise; Caffe then adds the batch mean and the
        # unbiased variance to its running sums on every such forward.
        dims = [0] + list(range(2, x.dim()))
        m = x.numel() // x.shape[1]
        if m > 1:
            y = F.batch_norm(x, None, None, training=True, eps=self.eps)
        else:  # one value per channel: variance 0, as Caffe computes it (torch refuses this)
            y = (x - x.mean(dim=dims, keepdim=True)) / (self.eps ** 0.5)
        with torch.no_grad():
            var, mean = torch.var_mean(x.detach(), dim=dims, correction=1 if m > 1 else 0)
            self.scale_factor.mul_(self.maf).add_(1.0)
            self.mean.mul_(self.maf).add_(mean)
            self.variance.mul_(self.maf).add_(var)
        return (y,)

    def caffe_blobs(self) -> list[Tensor]:
        return [self.mean, self.variance, self.scale_factor]


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
        return (F.prelu(x, self.weight),)

    def caffe_blobs(self) -> list[Tensor]:
        assert self.weight is not None
        return [self.weight]


