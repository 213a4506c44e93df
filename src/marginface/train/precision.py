"""Training precision: fp32, bf16 autocast (CPU or CUDA), fp16 autocast with a gradient scaler.

The backbone runs under the autocast context; the head's loss always gets float32 embeddings
(the fused loss picks its own product dtype). fp16 needs CUDA: its gradient scaler exists there
only, and bf16 has the range that makes a scaler unnecessary.

``auto`` (the default) is resolved once per run by :func:`resolve_precision` from a small table
(docs/training.md, "Speed"): bf16 where it was measured faster than fp32, i.e. on a device with
native bfloat16 (AVX512-BF16/AMX as oneDNN reports it, or CUDA with bf16) when the step is compiled
or runs in channels_last (the default layout); fp32 otherwise. On this project's CPU, eager
channels_last bf16 ran 1.35x eager channels_last fp32 and compiled channels_last bf16 2.25x eager
fp32 (benchmarks/bench_train.py), once the slow oneDNN bf16 input gradient of strided depthwise
convolutions was replaced (:mod:`marginface.train.strided_depthwise`). Eager NCHW bf16 was never
measured faster, so an NCHW eager step stays fp32.
"""

from __future__ import annotations

import torch

# re-exported here: resolve_precision looks it up in this module (tests patch it here)
from marginface.devices import native_bf16

__all__ = ["PRECISIONS", "check_precision", "autocast_context", "make_grad_scaler",
           "native_bf16", "resolve_precision"]

PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_precision(precision: str, compiled: bool, device: torch.device,
                      channels_last: bool = False) -> str:
    """``precision`` itself, or for ``auto``: bf16 if the step is ``compiled`` or runs in
    ``channels_last`` and the device has native bfloat16, else fp32 (the rule and the figures
    behind it: docs/training.md, "Speed")."""
    if precision != "auto":
        return precision
    return "bf16" if (compiled or channels_last) and native_bf16(device) else "fp32"


def check_precision(precision: str, device: torch.device) -> None:
    """Raise for an unknown precision or fp16 off CUDA (``precision`` already resolved)."""
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
