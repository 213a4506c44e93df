"""Pixel preprocessing: the one :class:`Preprocessing` type and the one :func:`normalize`.

A model's input is ``y = (x - mean) / std`` per channel, computed in float32 on RGB pixel values
x in 0..255, after reordering the channels to the network's ``channel_order``; ``mean`` and
``std`` are given in pixel units and in the network's channel order. Two conventions cover the
registered models (their defaults live in the model registry, docs/models.md):

- SphereFace / MobileFaceNet Caffe nets: ``(x - 127.5) / 128`` (Caffe ``mean_value: 127.5``,
  ``scale: 0.0078125``; Liu et al. 2017, Chen et al. 2018);
- insightface (ArcFace, Deng et al. 2019): ``(x / 255 - 0.5) / 0.5``, i.e. mean 127.5, std 127.5.

Training, evaluation, the ``Embedder`` and the Caffe converter all normalise through
:func:`normalize`, so a face gives the same input tensor bit for bit on every path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from marginface.templates import ARCFACE_TEMPLATE

__all__ = ["CHANNEL_ORDERS", "Preprocessing", "normalize", "preprocessing_of"]

CHANNEL_ORDERS = ("RGB", "BGR")
_FIELDS = ("mean", "std", "channel_order", "alignment_template")
_UNSET: Any = object()


def _triple(name: str, value: Any) -> tuple[float, float, float]:
    # A scalar means the same value for all three channels (mean=127.5).
    try:
        values = np.broadcast_to(np.asarray(value, dtype=float), (3,))
    except (TypeError, ValueError):
        raise ValueError(f"preprocessing {name} must be 1 or 3 numbers, got {value!r}") from None
    return (float(values[0]), float(values[1]), float(values[2]))


@dataclass(frozen=True, init=False)
class Preprocessing:
    """Per-channel ``(x - mean) / std`` on 0..255 pixels, channel order, alignment template.

    ``alignment_template`` names the 5-point template the faces are aligned to
    (:data:`marginface.templates.TEMPLATES`), None when the model has none. ``template`` is the
    old ``marginface.data.Preprocessing`` spelling of it, accepted as a keyword and readable as a
    property (deprecated; removed after the next release).
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: str
    alignment_template: str | None

    def __init__(
        self,
        mean: Any = 127.5,
        std: Any = 128.0,
        channel_order: str = "RGB",
        alignment_template: str | None = ARCFACE_TEMPLATE,
        *,
        template: str | None = _UNSET,
    ) -> None:
        if template is not _UNSET:
            alignment_template = template
        std_values = _triple("std", std)
        if min(std_values) <= 0:
            raise ValueError(f"preprocessing std must be positive, got {std_values}")
        if channel_order not in CHANNEL_ORDERS:
            raise ValueError(
                f"preprocessing channel_order must be one of {CHANNEL_ORDERS}, "
                f"got {channel_order!r}"
            )
        object.__setattr__(self, "mean", _triple("mean", mean))
        object.__setattr__(self, "std", std_values)
        object.__setattr__(self, "channel_order", channel_order)
        # "" was marginface.data's spelling of "no template"
        object.__setattr__(self, "alignment_template", alignment_template or None)

    @property
    def template(self) -> str | None:
        """Deprecated alias of :attr:`alignment_template`."""
        return self.alignment_template

    @classmethod
    def from_config(cls, config: Any, defaults: Preprocessing | None = None) -> Preprocessing:
        """From a ``Preprocessing``, a mapping (a model file's JSON) or an object with the fields.

        Missing fields come from ``defaults`` (the class defaults without it). Both field names
        of the template are read: ``alignment_template`` and the older ``template``.
        """
        if isinstance(config, Preprocessing):
            return config
        base = defaults if defaults is not None else cls()
        if isinstance(config, Mapping):
            unknown = set(config) - {*_FIELDS, "template"}
            if unknown:
                raise ValueError(f"preprocessing has unknown keys {sorted(unknown)}")
            values = dict(config)
        else:
            values = {k: getattr(config, k) for k in (*_FIELDS, "template") if hasattr(config, k)}
        if "template" in values:
            values.setdefault("alignment_template", values.pop("template"))
            values.pop("template", None)
        merged = {k: values.get(k, getattr(base, k)) for k in _FIELDS}
        merged["channel_order"] = str(merged["channel_order"]).upper()
        return cls(**merged)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (what a model file stores)."""
        return {
            "mean": list(self.mean),
            "std": list(self.std),
            "channel_order": self.channel_order,
            "alignment_template": self.alignment_template,
        }

    def apply(self, pixels: torch.Tensor) -> torch.Tensor:
        """:func:`normalize` with this preprocessing."""
        return normalize(pixels, self)


def normalize(pixels: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    """RGB pixels in 0..255, (3, H, W) or (N, 3, H, W), any dtype -> float32 model input.

    ``y = (x - mean) / std`` in float32 after reordering channels to the network's order. Every
    path into a model calls this one function: the arithmetic (a subtraction then a division,
    each correctly rounded) is what the evaluation path has always computed, so embeddings stay
    bit-identical.
    """
    if pixels.dim() not in (3, 4) or pixels.shape[-3] != 3:
        raise ValueError(
            f"pixels must have shape (3, H, W) or (N, 3, H, W), got {tuple(pixels.shape)}"
        )
    x = pixels.to(torch.float32)
    if preprocessing.channel_order == "BGR":
        x = x.flip(-3)
    mean = torch.tensor(preprocessing.mean, dtype=torch.float32, device=x.device).view(3, 1, 1)
    std = torch.tensor(preprocessing.std, dtype=torch.float32, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def preprocessing_of(model: Any, default: Preprocessing | None = None) -> Preprocessing:
    """``model.config.preprocessing`` as a :class:`Preprocessing`; ``default`` when the model
    has none (a ValueError naming ``model`` without a default)."""
    stored = getattr(getattr(model, "config", None), "preprocessing", None)
    if stored is not None:
        return Preprocessing.from_config(stored)
    if default is None:
        raise ValueError(
            "model has no config.preprocessing: build or load it with marginface.models"
        )
    return default
