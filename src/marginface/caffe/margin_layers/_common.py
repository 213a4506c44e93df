"""Helpers shared by the seed's Caffe layers: label blobs, phase-free checks (fillers are
``marginface.caffe.fillers.fill``).

Caffe stores labels as float blobs of shape (N,) or (N, 1, 1, 1) and casts them with
``static_cast<int>``; these helpers accept that layout as well as integer tensors, and raise
``ValueError`` naming the layer and the offending value instead of reading out of bounds.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["label_vector", "as_rows", "check_tops", "value_with_grad", "check_finite"]


def label_vector(label: Tensor, num: int, dim: int, layer: str, *,
                 allow_negative: bool = False) -> Tensor:
    """Flatten a Caffe label blob to a long vector of ``num`` entries, each in [0, dim).

    Floating labels must hold whole numbers. With ``allow_negative`` negative labels are kept
    (the caller skips them, as Caffe's CombinedMargin does); every other value must be a class.
    """
    if not isinstance(label, Tensor):
        raise ValueError(f"{layer}: label must be a torch.Tensor, got {type(label).__name__}")
    if label.numel() != num:
        raise ValueError(
            f"{layer}: label has {label.numel()} entries (shape {tuple(label.shape)}) "
            f"but the data blob has {num} samples"
        )
    flat = label.reshape(-1)
    if flat.dtype.is_floating_point:
        if not bool(torch.isfinite(flat).all()) or not bool((flat == flat.trunc()).all()):
            bad = int((~torch.isfinite(flat) | (flat != flat.trunc())).nonzero()[0, 0])
            raise ValueError(f"{layer}: label[{bad}] = {float(flat[bad])!r} is not a whole number")
    elif flat.dtype == torch.bool or flat.dtype.is_complex:
        raise ValueError(f"{layer}: label must be an integer or float tensor, got {flat.dtype}")
    flat = flat.long()
    bad_mask = flat >= dim
    if not allow_negative:
        bad_mask = bad_mask | (flat < 0)
    if bool(bad_mask.any()):
        bad = int(bad_mask.nonzero()[0, 0])
        low = "" if allow_negative else "0 <= "
        raise ValueError(
            f"{layer}: label[{bad}] = {int(flat[bad])} is outside {low}label < {dim} "
            f"(the number of outputs)"
        )
    return flat


def as_rows(bottom: Tensor, layer: str) -> Tensor:
    """View a (N, ...) blob as (N, dim), as Caffe's ``dim = count / num`` does."""
    if not isinstance(bottom, Tensor) or not bottom.is_floating_point():
        raise ValueError(f"{layer}: bottom must be a floating-point torch.Tensor")
    if bottom.dim() < 1 or bottom.shape[0] == 0:
        raise ValueError(f"{layer}: bottom must have a batch axis, got {tuple(bottom.shape)}")
    return bottom.reshape(bottom.shape[0], -1)


def check_tops(layer: str, num_tops: int, allowed: tuple[int, ...]) -> int:
    if num_tops not in allowed:
        raise ValueError(f"{layer}: num_tops must be one of {allowed}, got {num_tops!r}")
    return int(num_tops)


class _ValueWithGrad(torch.autograd.Function):
    """Return a precomputed ``value`` whose derivative in ``x`` is the precomputed ``grad``."""

    @staticmethod
    def forward(ctx, x: Tensor, value: Tensor, grad: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(grad)
        return value.to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return (grad_output * grad).to(grad_output.dtype), None, None


def value_with_grad(x: Tensor, value: Tensor, grad: Tensor) -> Tensor:
    """Elementwise map of ``x`` with a given value and a given derivative (both no-grad)."""
    return _ValueWithGrad.apply(x, value.detach(), grad.detach())


def check_finite(layer: str, **values: float) -> None:
    for name, value in values.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value)):
            raise ValueError(f"{layer}: {name} must be a finite number, got {value!r}")
