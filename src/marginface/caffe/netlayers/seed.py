"""Net adapters for the seed's margin layers, whose maths lives in ``marginface.caffe.layers``.

Normalize, LabelSpecificAdd, CosinAddm, CombinedMargin and MarginInnerProduct are built from the
prototxt's ``*_param`` fields (constructor keyword arguments named like those fields). The module
is imported when the layer is built, so nets without these layers never need it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from marginface.caffe.fillers import fill
from marginface.caffe.netlayers.base import CaffeLayer, Shape, sub
from marginface.caffe.prototxt import Message

__all__ = ["SeedLayer", "SEED_LAYER_PARAMS"]

# Caffe type -> the LayerParameter field holding its settings.
SEED_LAYER_PARAMS = {
    "Normalize": "normalize_param",
    "LabelSpecificAdd": "label_specific_add_param",
    "CosinAddm": "cosin_add_m_param",
    "CombinedMargin": "combined_margin_param",
    "MarginInnerProduct": "margin_inner_product_param",
}


def _kwargs(param: Message) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, values in param.items():
        if name.endswith("_filler"):
            continue  # fillers are applied here, with Caffe's definitions
        out[name] = values[-1] if len(values) == 1 else list(values)
    return {k: (str(v) if isinstance(v, str) else v) for k, v in out.items()}


class SeedLayer(CaffeLayer):
    """Wraps one ``marginface.caffe.layers`` module; its TRAIN/TEST mode follows the net phase."""

    def __init__(self, layer: Message, phase: str) -> None:
        super().__init__(str(layer.get("name")), str(layer.get("type")))
        self.param = sub(layer, SEED_LAYER_PARAMS[self.caffe_type])
        self.phase = phase
        self.n_tops = len(layer.get_all("top"))
        try:
            self._cls = getattr(importlib.import_module("marginface.caffe.layers"),
                                self.caffe_type)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"{self.where}: the seed layer {self.caffe_type} is not available "
                             f"in marginface.caffe.layers ({error})") from error
        self.inner: nn.Module | None = None
        if self.caffe_type != "MarginInnerProduct":
            self._build({})

    def _build(self, extra: dict[str, object]) -> None:
        kwargs = _kwargs(self.param)
        kwargs.update(extra)
        try:
            self.inner = self._cls(**kwargs)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{self.where}: bad {SEED_LAYER_PARAMS[self.caffe_type]}: "
                             f"{error}") from error
        self.inner.train(self.phase == "TRAIN")

    def setup(self, shapes: Sequence[Shape]) -> None:
        if self.caffe_type != "MarginInnerProduct":
            return
        k = 1
        for d in shapes[0][1:]:
            k *= d
        names = inspect.signature(self._cls).parameters
        key = next((n for n in ("num_input", "in_features", "input_dim", "embedding_dim")
                    if n in names), None)
        if key is None:
            raise ValueError(f"{self.where}: cannot tell MarginInnerProduct its input size")
        self._build({key: k})
        weight = self.caffe_blobs()[0]
        fill(weight.data, self.param.get("weight_filler"), where=f"{self.where} weight")

    def out_shapes(self, shapes: Sequence[Shape]) -> list[Shape]:
        if self.caffe_type == "MarginInnerProduct":
            out: list[Shape] = [(shapes[0][0], int(self.param.get("num_output")))]
            return out + [(1,)] * (self.n_tops - 1)
        return [tuple(shapes[0])]

    def train(self, mode: bool = True) -> SeedLayer:
        super().train(mode)
        if self.inner is not None:  # Caffe's behaviour follows the net's phase, not .eval()
            self.inner.train(self.phase == "TRAIN")
        return self

    def forward(self, *bottoms: Tensor) -> tuple[Tensor, ...]:
        assert self.inner is not None
        out = self.inner(*bottoms)
        tops = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        if len(tops) < self.n_tops:
            raise ValueError(f"{self.where}: layer gave {len(tops)} tops, the prototxt names "
                             f"{self.n_tops}")
        tops = tops[:self.n_tops]
        return tuple(t if torch.is_tensor(t) else torch.tensor(float(t)) for t in tops)

    def caffe_blobs(self) -> list[Tensor]:
        if self.inner is None:
            return []
        blobs = getattr(self.inner, "caffe_blobs", None)
        if callable(blobs):
            return list(blobs())
        return list(self.inner.parameters())
