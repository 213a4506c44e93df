"""Save and load a model as one safetensors file with its config in the file's metadata.

The metadata key ``marginface.model_config`` holds the JSON of :class:`ModelConfig` (name,
input size, embedding size, options, preprocessing), so the file alone rebuilds the model and
says how to feed it faces.

``marginface.tensors_sha256`` holds :func:`model_fingerprint` of the saved tensors: loading
recomputes it and refuses a file whose tensors changed (a flipped byte, a truncated edit), naming
both checksums. Files written before the checksum load with a warning. Loading and ONNX export
refuse weights with NaN or inf, naming the tensor. The fingerprint a gallery records for a loaded
model is the same function, so it equals the stored checksum (one source).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch import nn

from marginface.atomic import atomic_write_bytes
from marginface.models.config import ModelConfig, Preprocessing
from marginface.models.registry import create_model

__all__ = [
    "METADATA_KEY",
    "FORMAT_KEY",
    "FORMAT_VERSION",
    "CHECKSUM_KEY",
    "check_finite",
    "read_checksum",
    "save_model",
    "read_config",
    "load_model",
    "model_fingerprint",
]

METADATA_KEY = "marginface.model_config"
FORMAT_KEY = "marginface.format"
FORMAT_VERSION = "1"
CHECKSUM_KEY = "marginface.tensors_sha256"
_PREPROCESSING_FIELDS = {f.name for f in dataclasses.fields(Preprocessing)}


def _config_of(model: nn.Module) -> ModelConfig:
    config = getattr(model, "config", None)
    if not isinstance(config, ModelConfig):
        raise ValueError("model has no ModelConfig 'config' attribute; build it with create_model")
    return config


def save_model(model: nn.Module, path: str | Path, **overrides: Any) -> ModelConfig:
    """Write ``model``'s weights and config to ``path`` (safetensors); returns the saved config.

    ``overrides`` replace preprocessing fields (``mean``, ``std``, ``channel_order``,
    ``alignment_template``) for this file, e.g. ``save_model(m, p, std=(128.0,) * 3)``.
    """
    config = _config_of(model)
    unknown = set(overrides) - _PREPROCESSING_FIELDS
    if unknown:
        raise ValueError(
            f"unknown save_model override(s) {sorted(unknown)}; accepted: "
            f"{sorted(_PREPROCESSING_FIELDS)}"
        )
    if overrides:
        preprocessing = dataclasses.replace(config.preprocessing, **overrides)
        config = dataclasses.replace(config, preprocessing=preprocessing)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {METADATA_KEY: json.dumps(config.to_dict()), FORMAT_KEY: FORMAT_VERSION,
                CHECKSUM_KEY: model_fingerprint(tensors)}
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata=metadata))
    return config


def _metadata(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as error:  # safetensors raises its own error types for non-files
        raise ValueError(f"{path} is not a safetensors file: {error}") from error
    if METADATA_KEY not in metadata:
        raise ValueError(f"{path} has no '{METADATA_KEY}' metadata; not a marginface model file")
    return metadata


def _config(path: Path, metadata: Mapping[str, str]) -> ModelConfig:
    try:
        return ModelConfig.from_dict(json.loads(metadata[METADATA_KEY]))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
        raise ValueError(f"{path}: metadata '{METADATA_KEY}' is not a valid model config: "
                         f"{error}") from error


def read_config(path: str | Path) -> ModelConfig:
    """The :class:`ModelConfig` stored in a model file, without loading the weights."""
    path = Path(path)
    return _config(path, _metadata(path))


def read_checksum(path: str | Path) -> str | None:
    """The tensor checksum stored in a model file (None for a file written before it)."""
    return _metadata(Path(path)).get(CHECKSUM_KEY)


def check_finite(state: Mapping[str, torch.Tensor], where: str) -> None:
    """ValueError naming the first tensor of ``state`` that holds NaN or inf."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ValueError(f"{where}: tensor {name!r} {tuple(tensor.shape)} holds {bad} "
                             "non-finite value(s) (NaN or inf): the weights are unusable "
                             "(diverged training or a corrupt file)")


def _verify(path: Path, state: Mapping[str, torch.Tensor], stored: str | None) -> None:
    if stored is None:
        warnings.warn(f"{path} carries no tensor checksum (written before marginface stored "
                      "one): loaded unverified; save it again to add one", stacklevel=3)
    else:
        actual = model_fingerprint(state)
        if actual != stored:
            raise ValueError(f"{path}: tensor checksum mismatch: the file says sha256 {stored}, "
                             f"its tensors give {actual}; the file is corrupt or was altered")
    check_finite(state, str(path))


def load_model(path: str | Path) -> nn.Module:
    """Rebuild the model saved by :func:`save_model` (in eval mode) with its stored config."""
    path = Path(path)
    metadata = _metadata(path)
    config = _config(path, metadata)
    model = create_model(
        config.name,
        input_size=config.input_size,
        embedding_dim=config.embedding_dim,
        **config.options,
    )
    state = {}
    with safe_open(str(path), framework="pt") as handle:
        for key in handle.keys():
            state[key] = handle.get_tensor(key)
    missing = set(model.state_dict()) - set(state)
    unexpected = set(state) - set(model.state_dict())
    if missing or unexpected:
        raise ValueError(
            f"{path}: weights do not match model {config.name!r}: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    _verify(path, state, metadata.get(CHECKSUM_KEY))  # after the names: a clearer error first
    model.load_state_dict(state, strict=True)
    model.config = config
    return model.eval()


def model_fingerprint(model: nn.Module | Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex) over a model's tensors: for each name in sorted order, the name, dtype,
    shape and raw bytes (native little-endian layout, C order).

    The same weights give the same fingerprint however they were loaded; one changed bit, a
    renamed tensor or a cast changes it. Galleries record it so that a search with another
    model is refused.
    """
    state = model.state_dict() if isinstance(model, nn.Module) else model
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name]
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"model_fingerprint: entry {name!r} is not a tensor")
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        header = f"{name}\0{str(flat.dtype).removeprefix('torch.')}\0{tuple(tensor.shape)}\0"
        digest.update(header.encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
