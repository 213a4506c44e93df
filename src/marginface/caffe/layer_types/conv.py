"""Convolution and DepthwiseConvolution as Caffe defines them.

Convolution: weight (num_output, C_in / group, kh, kw) and bias (num_output); output size
``(H + 2p - (d(k-1)+1)) / s + 1`` rounded down. DepthwiseConvolution (the MobileFaceNet Caffe fork)
is the same computation with ``group`` = input channels (when ``group`` is not given).
InnerProduct is ``marginface.caffe.margin_layers.InnerProduct`` (see layer_types.adapters).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from marginface.caffe.fillers import fill
from marginface.caffe.layer_types.base import (
    MAX_NUM_OUTPUT,
    CaffeLayer,
    Shape,
    hw_pair,
    int_field,
    sub,
)
from marginface.caffe.prototxt import Message

__all__ = ["Convolution"]


class Convolution(CaffeLayer):
    """Caffe ``Convolution`` / ``DepthwiseConvolution`` (2-D)."""

    def __init__(self, layer: Message, phase: str) -> None:
        super().__init__(str(layer.get("name")), str(layer.get("type")))
        p = sub(layer, "convolution_param")
        if not p.has("num_output"):
            raise ValueError(f"{self.where}: convolution_param.num_output is required")
        self.num_output = int_field(p, "num_output", self.where, minimum=1,
                                    maximum=MAX_NUM_OUTPUT)
        self.kernel = hw_pair(p, "kernel_size", None, self.where)
        self.pad = hw_pair(p, "pad", 0, self.where)
        self.stride = hw_pair(p, "stride", 1, self.where)
        self.dilation = hw_pair(p, "dilation", 1, self.where)
        self.depthwise = self.caffe_type == "DepthwiseConvolution"
        self.group: int | None = (int_field(p, "group", self.where, minimum=1,
                                            maximum=MAX_NUM_OUTPUT) if p.has("group") else None)
        if self.group is None and not self.depthwise:
            self.group = 1
        self.bias_term = bool(p.get("bias_term", True))
        self.weight_filler = p.get("weight_filler")
        self.bias_filler = p.get("bias_filler")
        if int(p.get("axis", 1)) != 1:
            raise ValueError(f"{self.where}: only axis 1 (NCHW) convolution is supported")
        self.weight: nn.Parameter | None = None
        self.bias: nn.Parameter | None = None

    def _groups(self, channels: int) -> int:
        group = channels if self.group is None else self.group
        if channels % group or self.num_output % group:
            raise ValueError(f"{self.where}: group {group} must divide the input channels "
                             f"({channels}) and num_output ({self.num_output})")
        return group

    def setup(self, shapes: Sequence[Shape]) -> None:
        if len(shapes[0]) != 4:
            raise ValueError(f"{self.where}: expects a 4-D bottom, got shape {shapes[0]}")
        channels = shapes[0][1]
        group = self._groups(channels)
        self.group = group
        w = torch.empty(self.num_output, channels // group, *self.kernel)
        self.weight = nn.Parameter(fill(w, self.weight_filler, where=f"{self.where} weight"))
        if self.bias_term:
            b = torch.empty(self.num_output)
            self.bias = nn.Parameter(fill(b, self.bias_filler, where=f"{self.where} bias"))

    def out_shapes(self, shapes: Sequence[Shape]) -> list[Shape]:
        n, _, h, w = shapes[0]
        size = []
        for dim, k, p, s, d in zip((h, w), self.kernel, self.pad, self.stride, self.dilation,
                                   strict=True):
            out = (dim + 2 * p - (d * (k - 1) + 1)) // s + 1
            if out <= 0:
                raise ValueError(f"{self.where}: input {h}x{w} too small for kernel "
                                 f"{self.kernel}, pad {self.pad}, stride {self.stride}")
            size.append(out)
        return [(n, self.num_output, *size)]

    def forward(self, x: Tensor) -> tuple[Tensor]:
        assert self.weight is not None
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.pad, self.dilation,
                     self.group or 1)
        return (y,)

    def caffe_blobs(self) -> list[Tensor]:
        assert self.weight is not None
        return [self.weight] + ([self.bias] if self.bias is not None else [])
