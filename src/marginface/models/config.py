"""Model configuration carried by every model built through :func:`create_model`.

The config travels with the weights (see :mod:`marginface.models.io`) so that a model file alone
says how to feed it: input size, embedding size, and the pixel preprocessing
(:class:`marginface.preprocessing.Preprocessing`; per-model defaults live in the registry's
specs, :mod:`marginface.models.registry`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from marginface.preprocessing import CHANNEL_ORDERS, Preprocessing
from marginface.templates import ARCFACE_TEMPLATE, SPHEREFACE_TEMPLATE

__all__ = [
    "ARCFACE_TEMPLATE",
    "CHANNEL_ORDERS",
    "SPHEREFACE_TEMPLATE",
    "ModelConfig",
    "Preprocessing",
    "default_preprocessing",
]

# What files written before the registry held the defaults assumed for a missing field:
# insightface's (x - 127.5) / 127.5 with the ArcFace template.
_LEGACY_DEFAULTS = Preprocessing(mean=127.5, std=127.5, alignment_template=ARCFACE_TEMPLATE)


@dataclass(frozen=True)
class ModelConfig:
    """What :func:`create_model` was asked for, plus how to preprocess faces for the model."""

    name: str
    input_size: tuple[int, int]
    embedding_dim: int
    options: dict[str, Any] = field(default_factory=dict)
    preprocessing: Preprocessing = field(default_factory=lambda: _LEGACY_DEFAULTS)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        data["preprocessing"] = self.preprocessing.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """The config from its JSON form; also reads the fields of older files (``template``)."""
        known = {"name", "input_size", "embedding_dim", "options", "preprocessing"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"model config has unknown keys {sorted(unknown)}")
        missing = {"name", "input_size", "embedding_dim"} - set(data)
        if missing:
            raise ValueError(f"model config lacks keys {sorted(missing)}")
        return cls(
            name=str(data["name"]),
            input_size=(int(data["input_size"][0]), int(data["input_size"][1])),
            embedding_dim=int(data["embedding_dim"]),
            options=dict(data.get("options", {})),
            preprocessing=Preprocessing.from_config(
                data.get("preprocessing", {}), defaults=_LEGACY_DEFAULTS
            ),
        )


def default_preprocessing(name: str, input_size: tuple[int, int]) -> Preprocessing:
    """The registered model ``name``'s default preprocessing at ``input_size``.

    Moved to :func:`marginface.models.registry.default_preprocessing`; kept here as an alias.
    """
    from marginface.models.registry import default_preprocessing as from_registry

    return from_registry(name, input_size)
