"""Read and write binary Caffe ``.caffemodel`` files (a serialised ``NetParameter``), no protobuf.

Schema used (field numbers of Caffe's caffe.proto):

- NetParameter: name 1, layers 2 (V1LayerParameter, old layout), layer 100 (LayerParameter).
- LayerParameter: name 1, type 2 (string), blobs 7.
- V1LayerParameter: name 4, type 5 (enum LayerType), blobs 6; a V0 ``layer`` 1 inside it
  (V0LayerParameter: name 1, type 2 string, blobs 50) is read as well.
- BlobProto: shape 7 (BlobShape: dim 1, packed int64), data 5 (packed float), double_data 8
  (packed double), legacy num 1 / channels 2 / height 3 / width 4 (a 4-D shape).

Everything else in the file (bottoms, tops, layer parameters, diffs) is skipped. Packed and
unpacked encodings of repeated fields are both accepted. A truncated or malformed file raises
``ValueError`` naming the file, the byte offset and the layer being read.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from marginface.atomic import atomic_write_bytes
from marginface.caffe.wire import (
    FIXED32,
    FIXED64,
    LENGTH_DELIMITED,
    VARINT,
    WireError,
    as_int64,
    decode_packed_reals,
    decode_packed_varints,
    decode_real,
    decode_string,
    encode_bytes_field,
    encode_packed_reals,
    encode_packed_varints,
    encode_string_field,
    iter_fields,
    read_varint,
)

__all__ = ["LayerBlobs", "read_caffemodel", "parse_caffemodel", "write_caffemodel",
           "encode_caffemodel", "V1_LAYER_TYPES"]

#: V1LayerParameter.LayerType enum values -> the layer type strings of the current layout.
V1_LAYER_TYPES: dict[int, str] = {
    0: "", 35: "AbsVal", 1: "Accuracy", 30: "ArgMax", 2: "BNLL", 3: "Concat",
    37: "ContrastiveLoss", 4: "Convolution", 5: "Data", 39: "Deconvolution", 6: "Dropout",
    32: "DummyData", 7: "EuclideanLoss", 25: "Eltwise", 38: "Exp", 8: "Flatten", 9: "HDF5Data",
    10: "HDF5Output", 28: "HingeLoss", 11: "Im2col", 12: "ImageData", 13: "InfogainLoss",
    14: "InnerProduct", 15: "LRN", 29: "MemoryData", 16: "MultinomialLogisticLoss", 34: "MVN",
    17: "Pooling", 26: "Power", 18: "ReLU", 19: "Sigmoid", 27: "SigmoidCrossEntropyLoss",
    36: "Silence", 20: "Softmax", 21: "SoftmaxWithLoss", 22: "Split", 33: "Slice", 23: "TanH",
    24: "WindowData", 31: "Threshold",
}

# (name field, type field, blobs field) per layer message kind
_NEW, _V1, _V0 = (1, 2, 7), (4, 5, 6), (1, 2, 50)


@dataclass
class LayerBlobs:
    """One layer's learned blobs in Caffe's order and shapes (conv weight: (out, in, kh, kw))."""

    name: str
    type: str
    blobs: list[np.ndarray] = field(default_factory=list)


class _LayerError(ValueError):
    pass


def _parse_blob(buf: memoryview, span: tuple[int, int]) -> np.ndarray:
    shape: list[int] | None = None
    legacy: dict[int, int] = {}
    floats: list[np.ndarray] = []
    doubles: list[np.ndarray] = []
    for f in iter_fields(buf, *span):
        if f.number == 7 and f.wire_type == LENGTH_DELIMITED:
            shape = []
            for d in iter_fields(buf, *f.value):
                if d.number != 1:
                    continue
                if d.wire_type == LENGTH_DELIMITED:
                    shape.extend(as_int64(v) for v in decode_packed_varints(buf, d.value))
                elif d.wire_type == VARINT:
                    shape.append(as_int64(d.value))
        elif f.number in (1, 2, 3, 4) and f.wire_type == VARINT:
            legacy[f.number] = as_int64(f.value)
        elif f.number in (5, 8):
            target, dtype, wt = (floats, "<f4", FIXED32) if f.number == 5 else (
                doubles, "<f8", FIXED64)
            if f.wire_type == LENGTH_DELIMITED:
                target.append(decode_packed_reals(buf, f.value, dtype))
            elif f.wire_type == wt:
                target.append(np.array([decode_real(f.value, wt)], dtype=dtype[1:]))
            else:
                raise WireError(f"blob data field {f.number} has wire type {f.wire_type}",
                                f.offset)
    if shape is None:
        shape = [legacy.get(k, 0) for k in (1, 2, 3, 4)] if legacy else [0]
    if any(d < 0 for d in shape):
        raise WireError(f"negative blob dimension in shape {shape}", span[0])
    data = np.concatenate(doubles) if doubles else (
        np.concatenate(floats) if floats else np.zeros(0, np.float32))
    count = math.prod(shape)
    if data.size != count:
        raise WireError(f"blob of shape {tuple(shape)} needs {count} values but holds "
                        f"{data.size}", span[0])
    return data.reshape(shape)


def _parse_layer(buf: memoryview, span: tuple[int, int], kind: tuple[int, int, int],
                 index: int) -> list[LayerBlobs]:
    name_field, type_field, blobs_field = kind
    layer = LayerBlobs(name="", type="")
    nested: list[LayerBlobs] = []
    try:
        for f in iter_fields(buf, *span):
            if f.number == name_field and f.wire_type == LENGTH_DELIMITED:
                layer.name = decode_string(buf, f.value)
            elif f.number == type_field:
                if kind is _V1 and f.wire_type == VARINT:
                    layer.type = V1_LAYER_TYPES.get(f.value, f"V1_TYPE_{f.value}")
                elif f.wire_type == LENGTH_DELIMITED:
                    layer.type = decode_string(buf, f.value)
            elif f.number == blobs_field and f.wire_type == LENGTH_DELIMITED:
                layer.blobs.append(_parse_blob(buf, f.value))
            elif kind is _V1 and f.number == 1 and f.wire_type == LENGTH_DELIMITED:
                nested.extend(_parse_layer(buf, f.value, _V0, index))
    except WireError as err:
        raise _LayerError(f"layer {index} {layer.name!r} ({layer.type or 'type not read yet'}, "
                          f"message at byte offset {span[0]}): {err}") from None
    if nested and not layer.blobs:
        # a V0 definition wrapped in V1: its blobs and (if unset) its name and type count
        inner = nested[0]
        layer.blobs = inner.blobs
        layer.name = layer.name or inner.name
        layer.type = layer.type or inner.type
    return [layer]


def parse_caffemodel(data: bytes | bytearray | memoryview, *, source: str = "<bytes>"
                     ) -> list[LayerBlobs]:
    """Decode a serialised NetParameter into its layers' blobs (both layouts, in file order)."""
    buf = memoryview(bytes(data))
    layers: list[LayerBlobs] = []
    try:
        for f in iter_fields(buf):
            if f.number in (100, 2) and f.wire_type == LENGTH_DELIMITED:
                kind = _NEW if f.number == 100 else _V1
                layers.extend(_parse_layer(buf, f.value, kind, len(layers)))
    except _LayerError as err:
        raise ValueError(f"{source}: {err}") from None
    except WireError as err:
        name = _partial_layer_name(buf, err.offset)
        if name is not None:
            raise ValueError(f"{source}: layer {len(layers)} {name!r} (message at byte offset "
                             f"{err.offset}): {err}") from None
        last = f"after layer {layers[-1].name!r}" if layers else "before the first layer"
        raise ValueError(f"{source}: {err} in the NetParameter ({last})") from None
    return layers


def _partial_layer_name(buf: memoryview, offset: int) -> str | None:
    """The name of a (truncated) layer message whose key is at ``offset``, if readable."""
    try:
        key, pos = read_varint(buf, offset)
        if key not in (100 << 3 | LENGTH_DELIMITED, 2 << 3 | LENGTH_DELIMITED):
            return None
        _, pos = read_varint(buf, pos)
        name_field = 1 if key >> 3 == 100 else 4
        for f in iter_fields(buf, pos, len(buf)):
            if f.number == name_field and f.wire_type == LENGTH_DELIMITED:
                return decode_string(buf, f.value)
    except WireError:
        return None
    return None


def read_caffemodel(path: str | os.PathLike[str]) -> list[LayerBlobs]:
    """Read a ``.caffemodel`` file: every layer with its name, type and blobs (Caffe shapes)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"caffemodel file not found: {p}")
    data = p.read_bytes()
    layers = parse_caffemodel(data, source=str(p))
    if not any(layer.blobs for layer in layers):  # an empty or cut file parses as no layers
        raise ValueError(f"{p}: no layer with weights in its {len(data)} bytes ({len(layers)} "
                         "layer(s) without blobs): empty, truncated or not a caffemodel")
    return layers


def _encode_blob(blob: np.ndarray) -> bytes:
    arr = np.asarray(blob)
    shape = encode_bytes_field(7, encode_packed_varints(1, list(arr.shape)))
    if arr.dtype == np.float64:
        data = encode_packed_reals(8, arr.reshape(-1), "<f8")
    else:
        data = encode_packed_reals(5, arr.reshape(-1), "<f4")
    return data + shape  # an empty data field still records the dtype


def encode_caffemodel(layers: list[LayerBlobs], *, name: str = "") -> bytes:
    """Serialise layers' blobs as a NetParameter of the current layout (``layer`` = field 100).

    float64 blobs are stored as ``double_data``, everything else as float32 ``data``.
    """
    parts = [encode_string_field(1, name)] if name else []
    for i, layer in enumerate(layers):
        if not isinstance(layer, LayerBlobs):
            raise ValueError(f"layers[{i}] must be a LayerBlobs, got {type(layer).__name__}")
        body = encode_string_field(1, layer.name) + encode_string_field(2, layer.type)
        for j, blob in enumerate(layer.blobs):
            arr = np.asarray(blob)
            if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype,
                                                                             np.integer)):
                raise ValueError(f"layer {layer.name!r} blob {j}: dtype {arr.dtype} is not "
                                 f"numeric")
            body += encode_bytes_field(7, _encode_blob(arr))
        parts.append(encode_bytes_field(100, body))
    return b"".join(parts)


def write_caffemodel(path: str | os.PathLike[str], layers: list[LayerBlobs], *,
                     name: str = "") -> None:
    """Write ``layers`` to a ``.caffemodel`` file that Caffe (and ``read_caffemodel``) reads."""
    atomic_write_bytes(path, encode_caffemodel(layers, name=name))
