"""Strided depthwise convolutions kept in fp32 inside a bf16 CPU training step.

oneDNN (torch 2.13, CPU) has no fast bfloat16 kernel for the *input gradient* of a strided
depthwise convolution (``groups == in_channels``, stride > 1); it is 15-90x slower than the same
gradient in fp32. On this project's 2-core machine, batch 64, MobileFaceNet 112x96 channels_last,
its three stride-2 depthwise layers took 137, 102 and 92 ms of backward in bf16 against 47, 23
and 4 ms in fp32, i.e. 330 ms of an 870 ms compiled bf16 step. Running just those layers in fp32
(the cast in and out is fused by the compiler) took the step to 663 ms, 73 -> 96 img/s
(docs/performance.md, "Training (train)"). Every other layer stays bf16.

The swap changes the module's class only: parameters, buffers and ``state_dict`` keys are
untouched, so checkpoints and model files are the same either way.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Fp32Conv2d", "is_strided_depthwise", "keep_strided_depthwise_fp32"]


class Fp32Conv2d(nn.Conv2d):
    """A ``Conv2d`` that computes in its weight's dtype with autocast off, whatever the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.to(self.weight.dtype))


def is_strided_depthwise(module: nn.Module) -> bool:
    """A plain ``nn.Conv2d`` with one group per input channel and a stride above 1."""
    return (type(module) is nn.Conv2d and module.groups > 1
            and module.groups == module.in_channels == module.out_channels
            and any(s > 1 for s in module.stride))


def keep_strided_depthwise_fp32(model: nn.Module) -> int:
    """Turn every strided depthwise ``nn.Conv2d`` of ``model`` into :class:`Fp32Conv2d` in
    place; returns how many."""
    swapped = 0
    for module in model.modules():
        if is_strided_depthwise(module):
            module.__class__ = Fp32Conv2d
            swapped += 1
    return swapped
