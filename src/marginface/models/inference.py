"""A faster inference path for embedding extraction.

Three independent switches, each exact or nearly so:

- ``fold_bn``: fold every BatchNorm that directly follows a conv or linear layer into that
  layer's weight and bias (w' = w * g / sqrt(v + eps), b' = (b - mu) * g / sqrt(v + eps) + beta),
  using torch.fx's conv/linear-BN fusion; exact up to float rounding, fewer kernels.
- ``channels_last``: NHWC memory layout, which oneDNN's CPU convolutions (depthwise above all)
  run much faster than NCHW.
- ``bf16``: bfloat16 autocast (CPU); embeddings come back as float32. It changes embeddings
  slightly (cosine similarity to float32 > 0.999 on real faces, see docs/models.md).

Figures (benchmarks/bench_backbones.py, docs/performance.md) decide the defaults.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import Tensor, fx, nn
from torch.fx.experimental.optimization import fuse

from marginface.models.layers import InputCheck


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


class Embedder:
    """Embeds batches of preprocessed faces with :func:`prepare_for_inference`'s fast model.

    ``embedder(images)`` takes (N, 3, H, W) float32 already normalised, runs it in chunks of
    ``batch_size`` and returns (N, D) float32; ``flip=True`` adds the embedding of the
    horizontally flipped image (insightface's test-time protocol). ``embed_pixels`` first applies
    the model's stored preprocessing to pixel values in [0, 255] (RGB).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        fold_bn: bool = True,
        channels_last: bool = True,
        bf16: bool = False,
        batch_size: int = 64,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.model = prepare_for_inference(
            model, fold_bn=fold_bn, channels_last=channels_last, bf16=bf16
        )
        self.config = getattr(model, "config", None)
        self.batch_size = batch_size

    def _chunks(self, images: Tensor) -> Iterator[Tensor]:
        for start in range(0, images.shape[0], self.batch_size):
            yield images[start : start + self.batch_size]

    @torch.inference_mode()
    def __call__(self, images: Tensor, *, flip: bool = False) -> Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape (N, 3, H, W), got {tuple(images.shape)}")
        if self.config is not None and tuple(images.shape[2:]) != tuple(self.config.input_size):
            raise ValueError(
                f"images are {tuple(images.shape[2:])} but the model expects "
                f"{tuple(self.config.input_size)}"
            )
        outputs = []
        for chunk in self._chunks(images.float()):
            out = self.model(chunk)
            if flip:
                out = out + self.model(chunk.flip(3))
            outputs.append(out)
        return torch.cat(outputs) if outputs else images.new_zeros(0, 0)

    def embed_pixels(self, pixels: Tensor, *, flip: bool = False) -> Tensor:
        """Preprocess (N, 3, H, W) RGB pixels in [0, 255] as the model's config says, embed."""
        if self.config is None:
            raise ValueError("embed_pixels needs a model with a config (create_model)")
        return self(self.config.preprocessing.apply(pixels), flip=flip)
