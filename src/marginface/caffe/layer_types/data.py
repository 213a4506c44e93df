"""Caffe's data layers (Data, ImageData, Input) as net inputs.

A loaded net does not read LMDBs or image lists: the tops of ``Data``/``ImageData`` layers become
keyword inputs of the net (``net(data=x, label=y)``). Their ``transform_param`` is kept in a
:class:`DataLayerInfo` so a marginface dataset can be mapped onto the net: Caffe computes
``(pixel - mean_value) * scale`` on 0..255 BGR pixels after cropping ``crop_size`` (random in
TRAIN, centre in TEST) and, with ``mirror: true``, flips horizontally at random in TRAIN.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from marginface.caffe.layer_types.base import MAX_NUM_OUTPUT, MAX_WINDOW, int_field, int_values, sub
from marginface.caffe.prototxt import Message

__all__ = ["DataLayerInfo", "DATA_LAYER_TYPES"]

DATA_LAYER_TYPES = ("Data", "ImageData", "Input")


@dataclass
class DataLayerInfo:
    """What a data layer said about its input (all fields straight from the prototxt)."""

    name: str
    type: str
    tops: list[str]
    phase: str
    scale: float = 1.0
    mean_value: list[float] = field(default_factory=list)
    mean_file: str | None = None
    crop_size: int = 0
    mirror: bool = False
    batch_size: int | None = None
    source: str | None = None
    root_folder: str | None = None
    new_height: int = 0
    new_width: int = 0
    is_color: bool = True
    shapes: list[tuple[int, ...]] = field(default_factory=list)

    @classmethod
    def from_layer(cls, layer: Message, phase: str) -> DataLayerInfo:
        t = sub(layer, "transform_param")
        kind = str(layer.get("type"))
        param = sub(layer, "image_data_param" if kind == "ImageData" else "data_param")
        where = f"layer {layer.get('name')!r} ({kind})"
        shapes = [tuple(int_values(s, "dim", where))
                  for s in sub(layer, "input_param").get_all("shape")]
        return cls(
            name=str(layer.get("name")), type=kind, tops=[str(x) for x in layer.get_all("top")],
            phase=phase, scale=float(t.get("scale", 1.0)),
            mean_value=[float(v) for v in t.get_all("mean_value")],
            mean_file=t.get("mean_file"),
            crop_size=int_field(t, "crop_size", where, default=0, maximum=MAX_WINDOW),
            mirror=bool(t.get("mirror", False)),
            batch_size=(int_field(param, "batch_size", where, minimum=1, maximum=MAX_NUM_OUTPUT)
                        if param.has("batch_size") else None),
            source=param.get("source"), root_folder=param.get("root_folder"),
            new_height=int_field(param, "new_height", where, default=0, maximum=MAX_WINDOW),
            new_width=int_field(param, "new_width", where, default=0, maximum=MAX_WINDOW),
            is_color=bool(param.get("is_color", True)), shapes=shapes)

    def transform(self, pixels: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Apply Caffe's transform to a (N, C, H, W) batch of 0..255 pixel values."""
        if self.mean_file:
            raise ValueError(f"data layer {self.name!r}: mean_file is not supported; "
                             "give mean_value")
        x = pixels.float()
        if self.crop_size:
            c = self.crop_size
            h, w = x.shape[-2:]
            if c > min(h, w):
                raise ValueError(f"data layer {self.name!r}: crop_size {c} exceeds {h}x{w}")
            if self.phase == "TRAIN":
                top = int(torch.randint(0, h - c + 1, (1,), generator=generator))
                left = int(torch.randint(0, w - c + 1, (1,), generator=generator))
            else:
                top, left = (h - c) // 2, (w - c) // 2
            x = x[..., top:top + c, left:left + c]
        if self.mirror and self.phase == "TRAIN":
            flip = torch.rand(x.shape[0], generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        if self.mean_value:
            mean = torch.tensor(self.mean_value, dtype=x.dtype)
            if mean.numel() not in (1, x.shape[1]):
                raise ValueError(f"data layer {self.name!r}: {mean.numel()} mean values for "
                                 f"{x.shape[1]} channels")
            x = x - mean.reshape(1, -1, 1, 1)
        return x * self.scale
