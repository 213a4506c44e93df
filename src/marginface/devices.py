"""What a device can do natively, for the choices that depend on it (training precision, the
exact search's product)."""

from __future__ import annotations

import torch

__all__ = ["native_bf16"]


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively (not emulated through fp32): CUDA with
    bf16, or a CPU whose oneDNN reports AVX512-BF16/AMX."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        try:
            return bool(probe()) if probe is not None else False
        except RuntimeError:  # a build without oneDNN
            return False
    return False
