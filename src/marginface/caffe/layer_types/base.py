"""Base class of the modules a Caffe net is built from, and prototxt field helpers.

Every layer module takes its bottoms as positional tensors and returns a tuple of tops. Shapes
are handled in two steps so parameters exist as early as possible: ``out_shapes`` maps bottom
shapes to top shapes without running anything, and ``setup`` creates parameters once the bottom
shapes are known (at construction when the net's input shapes are given, else at the first call).
``caffe_blobs`` returns parameters and buffers in Caffe's blob order (the weight-file contract).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from marginface.caffe.prototxt import Message

Shape = tuple[int, ...]

__all__ = ["CaffeLayer", "Shape", "sub", "hw_pair", "canonical_axis", "int_field", "int_values",
           "float_values", "MAX_NUM_OUTPUT", "MAX_WINDOW"]

#: Largest ``num_output`` accepted: 2**24 (16.7M outputs; the largest face training sets have
#: about 2M identities). A larger value would only allocate a classifier nobody can train.
MAX_NUM_OUTPUT = 2**24
#: Largest kernel, pad, stride or dilation accepted (a window far larger than any image).
MAX_WINDOW = 2**16
# the smallest legal value of each window field (Caffe: kernel, stride, dilation >= 1, pad >= 0)
_WINDOW_MINIMUM = {"kernel_size": 1, "kernel": 1, "stride": 1, "dilation": 1, "pad": 0}


class CaffeLayer(nn.Module):
    """A Caffe layer as a module: ``forward(*bottoms) -> tuple[Tensor, ...]``."""

    def __init__(self, name: str, type_name: str) -> None:
        super().__init__()
        self.caffe_name = name
        self.caffe_type = type_name
        self.ready = False

    @property
    def where(self) -> str:
        return f"layer {self.caffe_name!r} ({self.caffe_type})"

    def setup(self, shapes: Sequence[Shape]) -> None:
        """Create parameters for these bottom shapes (default: none)."""

    def out_shapes(self, shapes: Sequence[Shape]) -> list[Shape]:
        """Top shapes for these bottom shapes (default: one top shaped like the first bottom)."""
        return [tuple(shapes[0])]

    def ensure_ready(self, shapes: Sequence[Shape]) -> None:
        if not self.ready:
            self.setup([tuple(s) for s in shapes])
            self.ready = True

    def caffe_blobs(self) -> list[Tensor]:
        """Parameters and buffers in Caffe's blob order (empty for parameter-free layers)."""
        return []

    def extra_repr(self) -> str:
        return f"name={self.caffe_name!r}"


def sub(layer: Message, field: str) -> Message:
    """The layer's ``field`` sub-message, or an empty one (all defaults)."""
    value = layer.get(field)
    if value is None:
        return Message()
    if not isinstance(value, Message):
        raise ValueError(f"layer {layer.get('name')!r}: field {field!r} must be a message")
    return value


def _checked_int(param: Message, name: str, index: int, value: object, where: str,
                 minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValueError(f"{param.at(name, index)}: {where}: {name} must be a whole number in "
                         f"[{minimum}, {maximum}], got {value!r}")
    return value


def int_field(param: Message, name: str, where: str, *, default: int | None = None,
              minimum: int = 0, maximum: int = 2**31 - 1) -> int:
    """The integer field ``name`` of ``param`` (its last value), checked for type and range;
    ValueError naming ``source:line:column``, the layer and the value (1.5, 0, -3, "x")."""
    if not param.has(name):
        if default is None:
            raise ValueError(f"{param.at()}: {where}: {name} is required")
        return default
    return _checked_int(param, name, -1, param.get(name), where, minimum, maximum)


def int_values(param: Message, name: str, where: str, *, minimum: int = 1,
               maximum: int = MAX_NUM_OUTPUT) -> list[int]:
    """Every value of the repeated integer field ``name`` (a shape's ``dim``), each checked as
    :func:`int_field` checks one."""
    return [_checked_int(param, name, i, v, where, minimum, maximum)
            for i, v in enumerate(param.get_all(name))]


def float_values(param: Message, name: str, where: str, *, default: float | None = None,
                 minimum: float = -math.inf) -> list[float]:
    """Every value of the number field ``name`` (``[default]`` when absent and a default is
    given), each a finite number >= ``minimum``; ValueError naming ``source:line:column``."""
    values = param.get_all(name)
    if not values:
        return [] if default is None else [default]
    out = []
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not math.isfinite(value) or value < minimum:
            bound = f" >= {minimum:g}" if math.isfinite(minimum) else ""
            raise ValueError(f"{param.at(name, i)}: {where}: {name} must be a finite number"
                             f"{bound}, got {value!r}")
        out.append(float(value))
    return out


def hw_pair(param: Message, base: str, default: int | None, where: str) -> tuple[int, int]:
    """Caffe's ``base`` (repeated, 1 or 2 values) or ``base_h``/``base_w`` as (h, w).

    ``kernel_size`` has the ``kernel_h``/``kernel_w`` spelling; ``pad`` and ``stride`` likewise.
    Every value is checked to be a whole number in range (``kernel_size: 0`` or ``1.5`` is an
    error naming ``source:line:column``).
    """
    short = "kernel" if base == "kernel_size" else base
    low = _WINDOW_MINIMUM.get(base, 0)
    has_h, has_w = param.has(f"{short}_h"), param.has(f"{short}_w")
    values = [_checked_int(param, base, i, v, where, low, MAX_WINDOW)
              for i, v in enumerate(param.get_all(base))]
    if has_h or has_w:
        if values:
            raise ValueError(f"{where}: give either {base} or {short}_h/{short}_w, not both")
        if not (has_h and has_w):
            raise ValueError(f"{where}: {short}_h and {short}_w must be given together")
        return (int_field(param, f"{short}_h", where, minimum=low, maximum=MAX_WINDOW),
                int_field(param, f"{short}_w", where, minimum=low, maximum=MAX_WINDOW))
    if len(values) == 1:
        return values[0], values[0]
    if len(values) == 2:
        return values[0], values[1]
    if not values and default is not None:
        return default, default
    raise ValueError(f"{where}: {base} needs 1 or 2 values for a 2-D layer, got {values}")


def canonical_axis(axis: int, ndim: int, where: str) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"{where}: axis {axis} out of range for a {ndim}-D blob")
    return axis % ndim
