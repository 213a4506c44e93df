"""Training precision: fp32, bf16 autocast (CPU or CUDA), fp16 autocast with a gradient scaler.

The backbone runs under the autocast context; the head's loss always gets float32 embeddings
(the fused loss picks its own product dtype). fp16 needs CUDA: its gradient scaler exists there
only, and bf16 has the range that makes a scaler unnecessary.
"""

from __future__ import annotations

import torch

__all__ = ["PRECISIONS", "check_precision", "autocast_context", "make_grad_scaler"]

PRECISIONS = ("fp32", "bf16", "fp16")


def check_precision(precision: str, device: torch.device) -> None:
    """Raise for an unknown precision or fp16 off CUDA."""
    if precision not in PRECISIONS:
        raise ValueError(f"train.precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("train.precision='fp16' needs CUDA; use 'bf16' or 'fp32' on CPU")


def autocast_context(precision: str, device: torch.device) -> torch.autocast:
    """The autocast context for the backbone's forward (disabled for fp32)."""
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def make_grad_scaler(precision: str) -> torch.amp.GradScaler:
    """A CUDA gradient scaler, enabled for fp16 only (a no-op otherwise)."""
    return torch.amp.GradScaler("cuda", enabled=precision == "fp16")
