"""Strided depthwise convolutions in a bf16 CPU training step, with a fast input gradient.

oneDNN (torch 2.13, CPU) has no fast bfloat16 kernel for the *input gradient* of a strided
depthwise convolution (``groups == in_channels``, stride > 1): it is 15-90x slower than the
same gradient in fp32. On this project's 2-core machine, batch 64, MobileFaceNet 112x96
channels_last, the three stride-2 depthwise layers took 137, 102 and 92 ms of backward in bf16
against 47, 23 and 4 ms in fp32: 330 ms of an 870 ms compiled bf16 step.

The stride-1 bf16 depthwise kernel is fast, and the input gradient of a stride-s convolution is
a stride-1 convolution: spread the output gradient onto a zero grid at stride s (the stride-1
output's size), then convolve it with the spatially flipped kernel and padding ``k - 1 - p``.
That is what :class:`StridedDepthwiseConv2d` does under CPU bf16 autocast (the forward and the
weight gradient keep oneDNN's own kernels, which are fast). Measured in-process, compiled:
the step went from 870 ms (all bf16) to 733 ms with these layers in fp32, and to 651 ms with
this gradient (docs/performance.md, "Training (train)").

The swap changes the module's class only: parameters, buffers and ``state_dict`` keys are
untouched, so checkpoints and model files are the same either way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["StridedDepthwiseConv2d", "is_strided_depthwise", "strided_depthwise_conv2d",
           "use_fast_strided_depthwise"]


class _StridedDepthwise(torch.autograd.Function):
    """``conv2d(x, w, b, stride, padding, groups=C)`` with the zero-grid input gradient."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, stride: tuple[int, int],
                padding: tuple[int, int]) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(x, weight, bias, stride, padding, 1, weight.shape[0])

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        (sh, sw), (ph, pw) = ctx.stride, ctx.padding
        channels, _, kh, kw = weight.shape
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            n, _, h, w = x.shape
            # the stride-1 output grid, zero except where the strided outputs were taken
            grid = grad_out.new_zeros((n, channels, h + 2 * ph - kh + 1, w + 2 * pw - kw + 1))
            if grad_out.is_contiguous(memory_format=torch.channels_last):
                grid = grid.contiguous(memory_format=torch.channels_last)
            grid[:, :, ::sh, ::sw] = grad_out
            grad_x = F.conv2d(grid, weight.flip(2, 3), None, 1, (kh - 1 - ph, kw - 1 - pw), 1,
                              channels)
        if ctx.needs_input_grad[1]:
            grad_w = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, [sh, sw], [ph, pw], [1, 1], False, [0, 0], channels,
                [False, True, False])[1]
        if ctx.needs_input_grad[2]:
            grad_b = grad_out.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None


def strided_depthwise_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None,
                             stride: tuple[int, int], padding: tuple[int, int]) -> Tensor:
    """Depthwise ``conv2d`` (weight (C, 1, kh, kw)) whose input gradient is a stride-1
    convolution of the zero-spread output gradient; needs ``padding <= kernel - 1``."""
    return _StridedDepthwise.apply(x, weight, bias, tuple(stride), tuple(padding))


class StridedDepthwiseConv2d(nn.Conv2d):
    """A strided depthwise ``Conv2d`` that uses :func:`strided_depthwise_conv2d` under CPU
    bfloat16 autocast, and ``Conv2d``'s own path otherwise."""

    def forward(self, x: Tensor) -> Tensor:
        if not (x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
                and torch.get_autocast_dtype("cpu") == torch.bfloat16):
            return super().forward(x)
        bias = None if self.bias is None else self.bias.to(torch.bfloat16)
        return strided_depthwise_conv2d(x.to(torch.bfloat16), self.weight.to(torch.bfloat16),
                                        bias, self.stride, self.padding)


def is_strided_depthwise(module: nn.Module) -> bool:
    """A plain ``nn.Conv2d`` with one group per input channel, a stride above 1, zero padding
    of at most kernel - 1, no dilation."""
    return (type(module) is nn.Conv2d and module.groups > 1
            and module.groups == module.in_channels == module.out_channels
            and any(s > 1 for s in module.stride) and module.dilation == (1, 1)
            and module.padding_mode == "zeros" and not isinstance(module.padding, str)
            and all(p <= k - 1 for p, k in zip(module.padding, module.kernel_size, strict=True)))


def use_fast_strided_depthwise(model: nn.Module) -> int:
    """Turn every strided depthwise ``nn.Conv2d`` of ``model`` into
    :class:`StridedDepthwiseConv2d` in place; returns how many."""
    swapped = 0
    for module in model.modules():
        if is_strided_depthwise(module):
            module.__class__ = StridedDepthwiseConv2d
            swapped += 1
    return swapped
