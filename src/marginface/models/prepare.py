"""A faster inference copy of a model: ``prepare_for_inference`` (BN folding, layout, bf16).

Three independent switches, each exact or nearly so:

- ``fold_bn``: fold every BatchNorm that directly follows a conv or linear layer into that
  layer's weight and bias (w' = w * g / sqrt(v + eps), b' = (b - mu) * g / sqrt(v + eps) + beta),
  using torch.fx's conv/linear-BN fusion; exact up to float rounding, fewer kernels.
- ``channels_last``: NHWC memory layout, which oneDNN's CPU convolutions (depthwise above all)
  run much faster than NCHW.
- ``bf16``: bfloat16 autocast (CPU); embeddings come back as float32. It changes embeddings
  slightly (cosine similarity to float32 > 0.999 on real faces, see docs/models.md).

Figures (benchmarks/bench_backbones.py, docs/performance.md) decide the defaults. Batching,
flips and engines are :mod:`marginface.eval` 's (``marginface.eval.Embedder``, ``make_forward``).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, fx, nn
from torch.fx.experimental.optimization import fuse

from marginface.models.layers import InputCheck

__all__ = ["InferenceModel", "fold_batchnorm", "prepare_for_inference"]


class InferenceModel(nn.Module):
    """Wraps an eval-mode, possibly BN-folded module; runs it in the chosen layout/precision."""

    def __init__(self, module: nn.Module, *, channels_last: bool, bf16: bool) -> None:
        super().__init__()
        self.module = module
        self.channels_last = channels_last
        self.bf16 = bf16

    def forward(self, images: Tensor) -> Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            out = self.module(images)
        return out.float()


class _Tracer(fx.Tracer):
    # Keep the input-size check as one opaque call: its Python `if` cannot be traced.
    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, InputCheck) or super().is_leaf_module(module, qualified_name)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) with conv->BN and linear->BN pairs folded."""
    module = copy.deepcopy(model).eval()
    config = getattr(model, "config", None)
    traced = fx.GraphModule(module, _Tracer().trace(module))
    folded = fuse(traced, inplace=True, no_trace=True)
    if config is not None:
        folded.config = config
    return folded


def prepare_for_inference(
    model: nn.Module,
    *,
    fold_bn: bool = True,
    channels_last: bool = True,
    bf16: bool = False,
) -> InferenceModel:
    """An eval-only copy of ``model`` for fast embedding; the original is left untouched.

    The result maps (N, 3, H, W) float32 to (N, D) float32 and has no gradients.
    """
    module = fold_batchnorm(model) if fold_bn else copy.deepcopy(model).eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    wrapped = InferenceModel(module, channels_last=channels_last, bf16=bf16).eval()
    config = getattr(model, "config", None)
    if config is not None:
        wrapped.config = config
    return wrapped
