"""Caffe's weight fillers (``FillerParameter``), applied to PyTorch tensors.

Caffe's definitions, for a blob with ``count`` elements and shape ``(d0, d1, ...)``:
``fan_in = count / d0``, ``fan_out = count / d1`` (``count`` for 1-D blobs), and
``n`` = fan_in (``variance_norm: FAN_IN``, the default), fan_out (``FAN_OUT``) or their mean
(``AVERAGE``).

- ``constant``: every element ``value`` (default 0).
- ``uniform``: U(``min``, ``max``), defaults 0 and 1.
- ``gaussian``: N(``mean``, ``std``²), defaults 0 and 1.
- ``xavier``: U(−a, a) with ``a = sqrt(3 / n)`` (Glorot & Bengio 2010 as Caffe implements it).
- ``msra``: N(0, 2 / n) (He et al. 2015).

A missing filler message means Caffe's default, ``constant`` 0 (Caffe's layers pass their own
defaults where they differ: Scale 1, PReLU 0.25). The filler is a prototxt ``Message`` or a plain
mapping of the same fields (the keyword form of ``marginface.caffe.margin_layers``); a field
FillerParameter does not define is an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from marginface.caffe.prototxt import Message

__all__ = ["fill", "FILLER_TYPES", "FILLER_FIELDS"]

FILLER_TYPES = ("constant", "uniform", "gaussian", "xavier", "msra")
#: The fields of Caffe's FillerParameter.
FILLER_FIELDS = frozenset({"type", "value", "min", "max", "mean", "std", "sparse",
                           "variance_norm"})


def _as_message(filler: Message | Mapping[str, Any], where: str) -> Message:
    if isinstance(filler, Message):
        fields = filler.fields()
        message = filler
    elif isinstance(filler, Mapping):
        fields = list(filler)
        message = Message()
        for key, value in filler.items():
            message.add(str(key), value)
    else:
        raise ValueError(f"{where}: a filler must be a message or a mapping, got "
                         f"{type(filler).__name__}")
    unknown = sorted(set(fields) - FILLER_FIELDS)
    if unknown:
        raise ValueError(f"{where}: unknown filler field(s) {unknown} (FillerParameter has "
                         f"{sorted(FILLER_FIELDS)})")
    return message


def _fan_n(shape: tuple[int, ...], norm: str, where: str) -> float:
    count = math.prod(shape)
    if count == 0:
        return 1.0
    fan_in = count / shape[0]
    fan_out = count / shape[1] if len(shape) > 1 else float(count)
    norm = str(norm).upper()
    if norm in ("FAN_IN", "0"):
        return fan_in
    if norm in ("FAN_OUT", "1"):
        return fan_out
    if norm in ("AVERAGE", "2"):
        return (fan_in + fan_out) / 2.0
    raise ValueError(f"{where}: unknown filler variance_norm {norm!r} "
                     "(expected FAN_IN, FAN_OUT or AVERAGE)")


@torch.no_grad()
def fill(tensor: Tensor, filler: Message | Mapping[str, Any] | None, *,
         default_value: float = 0.0,
         where: str = "filler") -> Tensor:
    """Fill ``tensor`` in place as Caffe's ``filler`` message says; returns the tensor.

    ``default_value`` is the constant used when ``filler`` is ``None`` (layer-specific default).
    ``where`` names the layer and field for error messages.
    """
    if filler is None:
        return tensor.fill_(default_value)
    filler = _as_message(filler, where)
    kind = str(filler.get("type", "constant")).lower()
    shape = tuple(tensor.shape)
    if kind == "constant":
        tensor.fill_(float(filler.get("value", 0.0)))
    elif kind == "uniform":
        low, high = float(filler.get("min", 0.0)), float(filler.get("max", 1.0))
        if high < low:
            raise ValueError(f"{where}: uniform filler max {high} < min {low}")
        tensor.uniform_(low, high)
    elif kind == "gaussian":
        if int(filler.get("sparse", -1)) >= 0:
            raise ValueError(f"{where}: sparse gaussian filler is not supported")
        std = float(filler.get("std", 1.0))
        if std < 0:
            raise ValueError(f"{where}: gaussian filler std {std} < 0")
        tensor.normal_(float(filler.get("mean", 0.0)), std)
    elif kind == "xavier":
        a = math.sqrt(3.0 / _fan_n(shape, filler.get("variance_norm", "FAN_IN"), where))
        tensor.uniform_(-a, a)
    elif kind == "msra":
        std = math.sqrt(2.0 / _fan_n(shape, filler.get("variance_norm", "FAN_IN"), where))
        tensor.normal_(0.0, std)
    else:
        raise ValueError(f"{where}: unknown filler type {kind!r} (supported: "
                         f"{', '.join(FILLER_TYPES)})")
    return tensor
