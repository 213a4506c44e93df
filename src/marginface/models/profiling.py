"""Parameter and multiply-add counts of a backbone.

MAdds (multiply-adds) count what the papers count: one per weight application in
convolutions and fully-connected layers, i.e. for a conv
``H_out * W_out * C_out * (C_in / groups) * k_h * k_w`` and for a linear ``in * out``
(per image). BatchNorm, PReLU, additions and biases are not counted. Parameters are all
``nn.Parameter`` values, frozen ones included (BN running statistics are buffers, not counted).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["count_parameters", "count_madds", "profile"]


def count_parameters(model: nn.Module) -> int:
    """Number of parameter values (trainable or frozen)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_madds(model: nn.Module, input_size: Sequence[int]) -> int:
    """Conv + linear multiply-adds of one forward pass of a single (3, H, W) image."""
    if len(input_size) != 2 or any(int(v) <= 0 for v in input_size):
        raise ValueError(f"input_size must be (height, width), got {input_size!r}")
    total = 0

    def conv_hook(module: nn.Conv2d, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        per_output = (module.in_channels // module.groups) * kh * kw
        total += output[0].numel() * per_output

    def linear_hook(module: nn.Linear, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        rows = output[0].numel() // module.out_features
        total += module.in_features * module.out_features * rows

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    was_training = model.training
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        model.eval()
        model(torch.zeros(1, 3, int(input_size[0]), int(input_size[1]), device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return total


def profile(model: nn.Module, input_size: Sequence[int] | None = None) -> tuple[int, int]:
    """``(parameters, multiply-adds)`` for one image; ``input_size`` defaults to the config's."""
    if input_size is None:
        config = getattr(model, "config", None)
        if config is None:
            raise ValueError("input_size is required for a model without a config")
        input_size = config.input_size
    return count_parameters(model), count_madds(model, input_size)
