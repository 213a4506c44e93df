"""Net adapters for the layers whose maths lives in ``marginface.caffe.margin_layers``.

The seed article's margin layers (Normalize, LabelSpecificAdd, CosinAddm, CombinedMargin,
MarginInnerProduct) and the layers they are used with (InnerProduct, Scale, SoftmaxWithLoss) are
modules of ``marginface.caffe.margin_layers`` with constructor keywords named like the prototxt
fields.
:class:`LibraryLayer` builds one from the layer's ``*_param`` message once the bottom shapes are
known, lets the net's phase (not ``.train()``/``.eval()``) choose Caffe's TRAIN/TEST behaviour,
and lists its blobs in Caffe's order. The module is imported when such a layer is built.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from marginface.caffe.layer_types.base import (
    MAX_NUM_OUTPUT,
    CaffeLayer,
    Shape,
    canonical_axis,
    int_field,
    sub,
)
from marginface.caffe.prototxt import Message

__all__ = ["LibraryLayer", "LIBRARY_LAYER_TYPES"]


def _plain(value: Any) -> Any:
    """Prototxt values -> plain Python (filler messages become dicts)."""
    if isinstance(value, Message):
        return {k: _plain(v[-1]) for k, v in value.items()}
    if isinstance(value, str):
        return str(value)
    return value


def _fields(param: Message, skip: Sequence[str] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, values in param.items():
        if name not in skip:
            out[name] = _plain(values[-1])
    return out


def _inner_product(layer: Message, shapes: Sequence[Shape], n_tops: int) -> dict[str, Any]:
    kwargs = _fields(sub(layer, "inner_product_param"))
    axis = canonical_axis(int(kwargs.get("axis", 1)), len(shapes[0]), "InnerProduct")
    kwargs["in_features"] = math.prod(shapes[0][axis:])
    return kwargs


def _margin_inner_product(layer: Message, shapes: Sequence[Shape], n_tops: int) -> dict:
    kwargs = _fields(sub(layer, "margin_inner_product_param"))
    kwargs["in_features"] = math.prod(shapes[0][1:])
    kwargs["num_tops"] = n_tops
    return kwargs


def _scale(layer: Message, shapes: Sequence[Shape], n_tops: int) -> dict[str, Any]:
    kwargs = _fields(sub(layer, "scale_param"))
    kwargs["num_bottoms"] = len(shapes)
    x = shapes[0]
    axis = canonical_axis(int(kwargs.get("axis", 1)), len(x), "Scale") if x else 0
    if len(shapes) == 2:
        kwargs["scale_shape"] = tuple(shapes[1])
    else:
        num_axes = int(kwargs.get("num_axes", 1))
        kwargs["scale_shape"] = tuple(x[axis:] if num_axes == -1 else x[axis:axis + num_axes])
    return kwargs


def _softmax_loss(layer: Message, shapes: Sequence[Shape], n_tops: int) -> dict[str, Any]:
    kwargs = _fields(sub(layer, "loss_param"))
    if "normalization" in kwargs:
        mode = str(kwargs["normalization"])
        kwargs["normalization"] = {"0": "FULL", "1": "VALID", "2": "BATCH_SIZE",
                                   "3": "NONE"}.get(mode, mode)
    kwargs["axis"] = int(sub(layer, "softmax_param").get("axis", 1))
    kwargs["num_tops"] = n_tops
    return kwargs


def _param_of(field: str) -> Callable[[Message, Sequence[Shape], int], dict[str, Any]]:
    return lambda layer, shapes, n_tops: _fields(sub(layer, field))


def _with_tops(field: str) -> Callable[[Message, Sequence[Shape], int], dict[str, Any]]:
    def build(layer: Message, shapes: Sequence[Shape], n_tops: int) -> dict[str, Any]:
        kwargs = _fields(sub(layer, field))
        if n_tops != 1:
            kwargs["num_tops"] = n_tops
        return kwargs
    return build


# Caffe type -> keyword arguments for the marginface.caffe.margin_layers class of the same name.
LIBRARY_LAYER_TYPES: dict[str, Callable[[Message, Sequence[Shape], int], dict[str, Any]]] = {
    "InnerProduct": _inner_product,
    "Scale": _scale,
    "SoftmaxWithLoss": _softmax_loss,
    "Normalize": _with_tops("normalize_param"),
    "LabelSpecificAdd": _with_tops("label_specific_add_param"),
    "CosinAddm": _param_of("cosin_add_m_param"),
    "CombinedMargin": _param_of("combined_margin_param"),
    "MarginInnerProduct": _margin_inner_product,
}


_NUM_OUTPUT_PARAM = {"InnerProduct": "inner_product_param",
                     "MarginInnerProduct": "margin_inner_product_param"}


class LibraryLayer(CaffeLayer):
    """One ``marginface.caffe.margin_layers`` module in a net; TRAIN/TEST follows the net phase."""

    def __init__(self, layer: Message, phase: str) -> None:
        super().__init__(str(layer.get("name")), str(layer.get("type")))
        self.layer = layer
        self.phase = phase
        self.n_tops = len(layer.get_all("top"))
        try:
            self._cls = getattr(importlib.import_module("marginface.caffe.margin_layers"),
                                self.caffe_type)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"{self.where}: the layer {self.caffe_type} is not available "
                             f"in marginface.caffe.margin_layers ({error})") from error
        self.inner: nn.Module | None = None
        if self.caffe_type in _NUM_OUTPUT_PARAM:  # checked here: out_shapes reads it first
            int_field(sub(layer, _NUM_OUTPUT_PARAM[self.caffe_type]), "num_output", self.where,
                      minimum=1, maximum=MAX_NUM_OUTPUT)

    def setup(self, shapes: Sequence[Shape]) -> None:
        kwargs = LIBRARY_LAYER_TYPES[self.caffe_type](self.layer, shapes, self.n_tops)
        try:
            self.inner = self._cls(**kwargs)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{self.where}: {error}") from error
        self.inner.train(self.phase == "TRAIN")

    def out_shapes(self, shapes: Sequence[Shape]) -> list[Shape]:
        kind = self.caffe_type
        if kind in ("InnerProduct", "MarginInnerProduct"):
            param = sub(self.layer, _NUM_OUTPUT_PARAM[kind])
            axis = canonical_axis(int(param.get("axis", 1)), len(shapes[0]), self.where)
            out: list[Shape] = [(*shapes[0][:axis], int(param.get("num_output")))]
            return out + [(1,)] * (self.n_tops - 1)
        if kind == "SoftmaxWithLoss":
            return [()] + [tuple(shapes[0])] * (self.n_tops - 1)
        return [tuple(shapes[0])] + [(1,)] * (self.n_tops - 1)

    def train(self, mode: bool = True) -> LibraryLayer:
        super().train(mode)
        if self.inner is not None:  # Caffe's behaviour follows the net's phase, not .eval()
            self.inner.train(self.phase == "TRAIN")
        return self

    def forward(self, *bottoms: Tensor) -> tuple[Tensor, ...]:
        assert self.inner is not None
        out = self.inner(*bottoms)
        tops = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        return tuple(t if torch.is_tensor(t) else torch.tensor(float(t)) for t in tops)

    def caffe_blobs(self) -> list[Tensor]:
        if self.inner is None:
            return []
        names = getattr(self.inner, "blob_names", None)
        if names is not None:
            return [getattr(self.inner, n) for n in names]
        return [t for t in (getattr(self.inner, "weight", None), getattr(self.inner, "bias", None))
                if isinstance(t, Tensor)]
