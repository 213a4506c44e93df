"""Model configuration carried by every model built through :func:`create_model`.

The config travels with the weights (see :mod:`marginface.models.io`) so that a model file alone
says how to feed it: input size, embedding size, and the pixel preprocessing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

SPHEREFACE_TEMPLATE = "sphereface_112x96"
ARCFACE_TEMPLATE = "arcface_112x112"
CHANNEL_ORDERS = ("RGB", "BGR")


@dataclass(frozen=True)
class Preprocessing:
    """Pixel preprocessing: ``y = (x - mean) / std`` per channel, x in pixel units [0, 255].

    ``channel_order`` is the order the network expects ("RGB" or "BGR");
    ``alignment_template`` names the 5-point template the faces were aligned to (SPEC section 7).
    """

    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    channel_order: str = "RGB"
    alignment_template: str | None = ARCFACE_TEMPLATE

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 3:
                raise ValueError(f"preprocessing {name} must have 3 values, got {value}")
            object.__setattr__(self, name, value)
        if any(s <= 0 for s in self.std):
            raise ValueError(f"preprocessing std must be positive, got {self.std}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(
                f"preprocessing channel_order must be one of {CHANNEL_ORDERS}, "
                f"got {self.channel_order!r}"
            )

    def apply(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalise an (N, 3, H, W) batch of pixel values in [0, 255] given in RGB order."""
        if pixels.dim() != 4 or pixels.shape[1] != 3:
            raise ValueError(f"pixels must have shape (N, 3, H, W), got {tuple(pixels.shape)}")
        x = pixels.float()
        if self.channel_order == "BGR":
            x = x.flip(1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std


def default_preprocessing(name: str, input_size: tuple[int, int]) -> Preprocessing:
    """Defaults per family and input size.

    - ``mobilefacenet`` and ``sphere*``: (x - 127.5) / 128, as the SphereFace Caffe nets
      (mean 127.5, scale 0.0078125) and the mobilefacenet-casia checkpoint were trained.
    - ``iresnet*`` and ``mobilefacenet_wide``: insightface's (x / 255 - 0.5) / 0.5,
      i.e. mean 127.5, std 127.5 in pixel units.
    - Template: 112x96 -> the SphereFace template, 112x112 -> the ArcFace template, other sizes
      have no standard template (None).
    """
    if name == "mobilefacenet" or name.startswith("sphere"):
        std = 128.0
    else:
        std = 127.5
    template = {(112, 96): SPHEREFACE_TEMPLATE, (112, 112): ARCFACE_TEMPLATE}.get(
        tuple(input_size)
    )
    return Preprocessing(
        mean=(127.5,) * 3, std=(std,) * 3, channel_order="RGB", alignment_template=template
    )


@dataclass(frozen=True)
class ModelConfig:
    """What :func:`create_model` was asked for, plus how to preprocess faces for the model."""

    name: str
    input_size: tuple[int, int]
    embedding_dim: int
    options: dict[str, Any] = field(default_factory=dict)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        data["preprocessing"]["mean"] = list(self.preprocessing.mean)
        data["preprocessing"]["std"] = list(self.preprocessing.std)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
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
            preprocessing=Preprocessing(**data.get("preprocessing", {})),
        )
