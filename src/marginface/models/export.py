"""Export a model to ONNX with a dynamic batch axis.

Input ``images`` (N, 3, H, W) float32 preprocessed faces; output ``embeddings`` (N, D). The
model's config (preprocessing included) is written into the ONNX metadata_props as JSON under
``marginface.model_config`` so the exported file is self-describing too.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from marginface.atomic import atomic_write_bytes
from marginface.models.config import ModelConfig
from marginface.models.io import METADATA_KEY, check_finite, load_model

__all__ = ["EXPORT_FORMATS", "export_model", "export_onnx", "write_onnx"]

EXPORT_FORMATS = ("onnx",)


def write_onnx(
    module: nn.Module, target: str | Path | io.BytesIO, input_size: tuple[int, int], *,
    opset: int = 17,
) -> None:
    """Trace ``module`` (eval mode) to ONNX in ``target`` (a path or an in-memory buffer).

    Input ``images`` (N, 3, H, W) float32 with a dynamic batch axis, output ``embeddings``;
    the one ``torch.onnx.export`` call of marginface (files here, onnxruntime in
    ``marginface.eval.engines``).
    """
    example = torch.zeros(2, 3, int(input_size[0]), int(input_size[1]))
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript-based exporter warns that it is legacy; it needs no onnxscript.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (example,),
            target if isinstance(target, io.BytesIO) else str(target),
            input_names=["images"],
            output_names=["embeddings"],
            dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )


def export_onnx(model: nn.Module, path: str | Path, *, opset: int = 17) -> Path:
    """Write ``model`` (evaluated in eval mode, float32, on CPU) as ONNX to ``path``."""
    import onnx  # optional dependency (extra "onnx")

    config = getattr(model, "config", None)
    if not isinstance(config, ModelConfig):
        raise ValueError("model has no ModelConfig 'config' attribute; build it with create_model")
    check_finite(model.state_dict(), f"export to {path}")
    module = copy.deepcopy(model).float().cpu().eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()  # exported in memory, so the file is written once, atomically
    write_onnx(module, buffer, config.input_size, opset=opset)
    proto = onnx.load_model_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(config.to_dict())
    return atomic_write_bytes(path, proto.SerializeToString())


def export_model(model_file: str | Path, output: str | Path, *, format: str = "onnx") -> Path:
    """Export the safetensors model file ``model_file`` to ``output`` in ``format``."""
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {EXPORT_FORMATS}, got {format!r}")
    return export_onnx(load_model(model_file), output)
