"""``model.init_from``: start the backbone from a marginface model file, with a new head.

The common user case: a backbone trained elsewhere (or imported with ``marginface
import-weights``), fine-tuned on a few thousand identities of one's own. The file must hold the
same architecture (name and options), input size and embedding size as the run's model; anything
else is a ValueError naming both, raised before training starts. The file's stored preprocessing
comes with its weights (they were trained on inputs scaled that way).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from torch import nn

from marginface.inputs import require_file

__all__ = ["init_backbone"]


def _describe(name: str, input_size, embedding_dim: int, options: dict) -> str:
    extra = f" {options}" if options else ""
    return f"{name}{extra} {input_size[0]}x{input_size[1]} {embedding_dim}-d"


def init_backbone(model: nn.Module, path: str | Path) -> None:
    """Copy the weights (and preprocessing) of the model file ``path`` into ``model``."""
    from marginface.models import load_model, read_config

    path = require_file(path, "model.init_from: model file")
    own = getattr(model, "config", None)
    if own is None:
        raise ValueError("model.init_from needs a marginface model (built by create_model)")
    stored = read_config(path)
    theirs = _describe(stored.name, stored.input_size, stored.embedding_dim, stored.options)
    ours = _describe(own.name, own.input_size, own.embedding_dim, own.options)
    if theirs != ours:
        raise ValueError(f"model.init_from: {path} is {theirs}, but the config's model is {ours} "
                         f"(architecture, input size and embedding size must match)")
    source = load_model(path)
    model.load_state_dict(source.state_dict())
    model.config = dataclasses.replace(own, preprocessing=source.config.preprocessing)
