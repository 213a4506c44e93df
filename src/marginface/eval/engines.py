"""Inference engines for embedding extraction: how a batch goes through the model.

- ``"eager"``: the model as it is (float32, NCHW; ``autocast`` a dtype for mixed precision on
  the model's device, as the trainer's periodic verification runs).
- ``"torch"``: marginface.models' ``prepare_for_inference`` (BatchNorm folded into the convs,
  channels_last); exact up to float rounding.
- ``"bf16"``: the same with bfloat16 autocast (slightly different embeddings).
- ``"onnxruntime"``: the model traced to ONNX in memory and run by onnxruntime's CPU provider
  (float32; the fastest on this project's 2-core machine, docs/performance.md).

All return a function mapping a float32 (N, 3, H, W) batch to float32 (N, D) embeddings.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from marginface.models.export import write_onnx
from marginface.models.prepare import prepare_for_inference

__all__ = ["ENGINES", "make_forward"]

ENGINES = ("eager", "torch", "bf16", "onnxruntime")


def _prepared(model: nn.Module, bf16: bool) -> nn.Module:
    try:
        return prepare_for_inference(model, fold_bn=True, channels_last=True, bf16=bf16)
    except Exception as error:  # noqa: BLE001 - a model torch.fx cannot trace runs eagerly
        message = f"prepare_for_inference failed ({error}); running the model eagerly"
        warnings.warn(message, stacklevel=3)
        return model.eval()


def _onnxruntime(model: nn.Module, input_size: tuple[int, int], threads: int | None):
    import onnxruntime

    buffer = io.BytesIO()
    write_onnx(model, buffer, input_size)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        buffer.getvalue(), options, providers=["CPUExecutionProvider"]
    )

    def forward(images: Tensor) -> Tensor:
        array = images.detach().cpu().contiguous().numpy()
        return torch.from_numpy(session.run(None, {"images": array})[0])

    return forward


def make_forward(
    model: nn.Module,
    engine: str = "torch",
    *,
    input_size: tuple[int, int],
    threads: int | None = None,
    autocast: torch.dtype | None = None,
) -> Callable[[Tensor], Tensor]:
    """A batch -> embeddings function for ``model`` run by ``engine`` (see module docstring)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if autocast is not None and engine != "eager":
        raise ValueError(f"autocast is for engine 'eager' only, got engine {engine!r}")
    model.eval()
    if engine == "onnxruntime":
        try:
            return _onnxruntime(model, input_size, threads)
        except ImportError as error:
            raise ValueError(f"engine 'onnxruntime' needs onnxruntime installed: {error}") from None
    module = model if engine == "eager" else _prepared(model, bf16=engine == "bf16")

    def forward(images: Tensor) -> Tensor:
        enabled = autocast is not None
        with torch.inference_mode(), torch.autocast(
            images.device.type, dtype=autocast or torch.bfloat16, enabled=enabled
        ):
            return module(images).float()

    return forward
