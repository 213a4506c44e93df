"""Parameter-free Caffe layers: activations, Dropout, Eltwise, Concat, Flatten, Reshape, Split,
Silence and Softmax, each with Caffe's defaults.

- ReLU: ``max(0, x) + negative_slope * min(0, x)`` (negative_slope 0). Sigmoid, TanH.
- Dropout: in TRAIN zero with probability ``dropout_ratio`` (0.5) and scale the kept values by
  ``1 / (1 - ratio)`` (Caffe scales at train time); identity in TEST.
- Eltwise: ``operation`` SUM (default, 1) with ``coeff`` per bottom, PROD (0), MAX (2).
- Concat: along ``axis`` (1; legacy ``concat_dim``). Flatten: axes ``axis``..``end_axis`` (1..-1).
- Reshape: ``shape { dim }`` over axes ``axis``.. (``num_axes`` -1 = to the end); dim 0 copies the
  bottom's dimension, one dim -1 is inferred.
- Softmax: along ``axis`` (1). Split copies its bottom to every top; Silence has no top.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from marginface.caffe.layer_types.base import CaffeLayer, Shape, canonical_axis, sub
from marginface.caffe.prototxt import Message

__all__ = ["ReLU", "Sigmoid", "TanH", "Dropout", "Eltwise", "Concat", "Flatten", "Reshape",
           "Split", "Silence", "Softmax"]


class ReLU(CaffeLayer):
    def __init__(self, layer: Message, phase: str) -> None:
        super().__init__(str(layer.get("name")), str(layer.get("type")))
        self.negative_slope = float(sub(layer, "relu_param").get("negative_slope", 0.0))

    def forward(self, x: Tensor) -> tuple[Tensor]:
        if self.negative_slope == 0.0:
            return (F.relu(x),)
        return (torch.where(x > 0, x, x * self.negative_slope),)


class Sigmoid(CaffeLayer):
    def __init__(self, layer: Message, phase: str) -> None:
        super().__init__(str(layer.get("name")), str(layer.get("type")))

    def forward(self, x: Tensor) -> tuple[Tensor]:
        return (torch.sigmoid(x),)


class TanH(CaffeLayer):
    def __init__(self, layer: Message, phase: str) -> None:
        super().__init__(str(layer.get("name")), str(layer.get("type")))

    def forward(self, x: Tensor) -> tuple[Tensor]:
        return (torch.tanh(x),)


class Dropout(CaffeLayer):
    def __init__(self, layer: Message, phase: str) -> None:
        super().__init__(str(layer.get("name")), str(layer.get("type")))
        self.ratio = float(sub(layer, "dropout_param").get("dropout_ratio", 0.5))
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"{self.where}: dropout_ratio {self.ratio} must be in [0, 1)")
        self.train_phase = phase == "TRAIN"

    def forward(self, x: Tensor) -> tuple[Tensor]:
        if not self.train_phase or self.ratio == 0.0:
            return (x,)
        keep = (torch.rand_like(x) >= self.ratio).to(x.dtype)
        return (x * keep / (1.0 - self.ratio),)


class Eltwise(CaffeLayer):
    def __init__(self, layer: Message, phase: str) -> None:
        super().__init__(str(layer.get("name")), str(layer.get("type")))
        p = sub(layer, "eltwise_param")
        op = str(p.get("operation", "SUM")).upper()
        self.op = {"0": "PROD", "1": "SUM", "2": "MAX"}.get(op, op)
        if self.op not in ("PROD", "SUM", "MAX"):
            raise ValueError(f"{self.where}: unknown eltwise operation {op}")
        self.coeff = [float(c) for c in p.get_all("coeff")]
        n = len(layer.get_all("bottom"))
        if self.coeff and (self.op != "SUM" or len(self.coeff) != n):
            raise ValueError(f"{self.where}: coeff needs operation SUM and one value per bottom "
                             f"({n}), got {self.coeff}")

    def out_shapes(self, shapes: Sequence[Shape]) -> list[Shape]:
        if any(tuple(s) != tuple(shapes[0]) for s in shapes):
            raise ValueError(f"{self.where}: bottoms must share one shape, got {list(shapes)}")
        return [tuple(shapes[0])]

    def forward(self, *xs: Tensor) -> tuple[Tensor]:
        self.out_shapes([tuple(x.shape) for x in xs])
        if self.op == "SUM":
            coeff = self.coeff or [1.0] * len(xs)
            y = xs[0] * coeff[0] if coeff[0] != 1.0 else xs[0]
            for c, x in zip(coeff[1:], xs[1:], strict=True):
                y = y + (x * c if c != 1.0 else x)
        elif self.op == "PROD":
            y = xs[0]
            for x in xs[1:]:
                y = y * x
        else:
            y = xs[0]
            for x in xs[1:]:
                y = torch.maximum(y, x)
        return (y,)


class Concat(CaffeLayer):
    def __init__(self, layer: Message, phase: str) -> None:
        super().__init__(str(layer.get("name")), str(layer.get("type")))
        p = sub(layer, "concat_param")
        self.axis = int(p.get("axis", p.get("concat_dim", 1)))

    def out_shapes(self, shapes: Sequence[Shape]) -> list[Shape]:
        axis = canonical_axis(self.axis, len(shapes[0]), self.where)
        for s in shapes:
            if len(s) != len(shapes[0]) or any(a != b for i, (a, b) in
                                               enumerate(zip(s, shapes[0], strict=True))
                                               if i != axis):
                raise ValueError(f"{self.where}: bottoms {list(shapes)} differ off axis {axis}")
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        return [tuple(out)]

    def forward(self, *xs: Tensor) -> tuple[Tensor]:
        return (torch.cat(xs, dim=canonical_axis(self.axis, xs[0].dim(), self.where)),)


class Flatten(CaffeLayer):
    def __init__(self, layer: Message, phase: str) -> None:
        super().__init__(str(layer.get("name")), str(layer.get("type")))
        p = sub(layer, "flatten_param")
        self.axis, self.end_axis = int(p.get("axis", 1)), int(p.get("end_axis", -1))

    def out_shapes(self, shapes: Sequence[Shape]) -> list[Shape]:
        s = shapes[0]
        a = canonical_axis(self.axis, len(s), self.where)
        e = canonical_axis(self.end_axis, len(s), self.where)
        return [(*s[:a], math.prod(s[a:e + 1]), *s[e + 1:])]

    def forward(self, x: Tensor) -> tuple[Tensor]:
        return (x.reshape(self.out_shapes([tuple(x.shape)])[0]),)


class Reshape(CaffeLayer):
    def __init__(self, layer: Message, phase: str) -> None:
        super().__init__(str(layer.get("name")), str(layer.get("type")))
        p = sub(layer, "reshape_param")
        self.dims = [int(d) for d in sub(p, "shape").get_all("dim")]
        self.axis, self.num_axes = int(p.get("axis", 0)), int(p.get("num_axes", -1))
        if sum(d == -1 for d in self.dims) > 1:
            raise ValueError(f"{self.where}: at most one dim may be -1, got {self.dims}")

    def out_shapes(self, shapes: Sequence[Shape]) -> list[Shape]:
        s = tuple(shapes[0])
        start = self.axis if self.axis >= 0 else len(s) + 1 + self.axis
        end = len(s) if self.num_axes == -1 else start + self.num_axes
        if not 0 <= start <= end <= len(s):
            raise ValueError(f"{self.where}: axis {self.axis} / num_axes {self.num_axes} out of "
                             f"range for shape {s}")
        middle = []
        for i, d in enumerate(self.dims):
            if d == 0:
                if start + i >= len(s):
                    raise ValueError(f"{self.where}: dim 0 at {i} copies a missing axis of {s}")
                middle.append(s[start + i])
            else:
                middle.append(d)
        if -1 in middle:
            known = math.prod(d for d in middle if d != -1) * math.prod(s[:start] + s[end:])
            if known == 0 or math.prod(s) % known:
                raise ValueError(f"{self.where}: cannot infer -1 reshaping {s} to {self.dims}")
            middle[middle.index(-1)] = math.prod(s) // known
        out = s[:start] + tuple(middle) + s[end:]
        if math.prod(out) != math.prod(s):
            raise ValueError(f"{self.where}: cannot reshape {s} ({math.prod(s)} values) to {out}")
        return [out]

    def forward(self, x: Tensor) -> tuple[Tensor]:
        return (x.reshape(self.out_shapes([tuple(x.shape)])[0]),)


class Split(CaffeLayer):
    def __init__(self, layer: Message, phase: str) -> None:
        super().__init__(str(layer.get("name")), str(layer.get("type")))
        self.n = len(layer.get_all("top"))

    def out_shapes(self, shapes: Sequence[Shape]) -> list[Shape]:
        return [tuple(shapes[0])] * self.n

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return (x,) * self.n


class Silence(CaffeLayer):
    def __init__(self, layer: Message, phase: str) -> None:
        super().__init__(str(layer.get("name")), str(layer.get("type")))

    def out_shapes(self, shapes: Sequence[Shape]) -> list[Shape]:
        return []

    def forward(self, *xs: Tensor) -> tuple[Tensor, ...]:
        return ()


class Softmax(CaffeLayer):
    def __init__(self, layer: Message, phase: str) -> None:
        super().__init__(str(layer.get("name")), str(layer.get("type")))
        self.axis = int(sub(layer, "softmax_param").get("axis", 1))

    def forward(self, x: Tensor) -> tuple[Tensor]:
        return (torch.softmax(x, dim=canonical_axis(self.axis, x.dim(), self.where)),)
