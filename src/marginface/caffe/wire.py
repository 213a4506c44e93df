"""The protobuf binary wire format, enough to read and write Caffe's ``.caffemodel`` files.

A message is a sequence of fields, each a key ``(field_number << 3) | wire_type`` (a varint)
followed by its value: wire type 0 a varint (int32/int64/bool/enum; negative int64 as 10-byte
two's complement), 1 eight little-endian bytes (double, fixed64), 2 a varint length and that many
bytes (string, bytes, nested message, packed repeated scalars), 5 four little-endian bytes
(float, fixed32). Groups (wire types 3/4) are obsolete and rejected. Every error is a
``WireError`` (a ``ValueError``) carrying the absolute byte offset where decoding failed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = [
    "VARINT",
    "FIXED64",
    "LENGTH_DELIMITED",
    "FIXED32",
    "WireError",
    "Field",
    "read_varint",
    "as_int64",
    "iter_fields",
    "decode_string",
    "decode_packed_varints",
    "decode_packed_reals",
    "decode_real",
    "encode_varint",
    "encode_key",
    "encode_varint_field",
    "encode_bytes_field",
    "encode_string_field",
    "encode_packed_varints",
    "encode_packed_reals",
    "encode_real_field",
]

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5


class WireError(ValueError):
    """Malformed or truncated protobuf data; ``offset`` is the absolute byte position."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} at byte offset {offset}")
        self.offset = offset


@dataclass(frozen=True)
class Field:
    """One decoded field: for wire type 2, ``value`` is the (start, end) span in the buffer."""

    number: int
    wire_type: int
    value: int | tuple[int, int] | bytes
    offset: int


def read_varint(buf: bytes | memoryview, pos: int, end: int | None = None) -> tuple[int, int]:
    """Decode a varint at ``pos``; returns (unsigned value, position after it)."""
    end = len(buf) if end is None else end
    result = shift = 0
    start = pos
    while True:
        if pos >= end:
            raise WireError("truncated varint", start)
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than 10 bytes", start)


def as_int64(value: int) -> int:
    """Reinterpret an unsigned 64-bit varint as a signed int64 (protobuf int32/int64)."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def iter_fields(buf: bytes | memoryview, start: int = 0, end: int | None = None
                ) -> Iterator[Field]:
    """Iterate over the fields of the message in ``buf[start:end]`` (absolute offsets)."""
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        offset = pos
        key, pos = read_varint(buf, pos, end)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0", offset)
        if wire_type == VARINT:
            value, pos = read_varint(buf, pos, end)
            yield Field(number, wire_type, value, offset)
        elif wire_type == LENGTH_DELIMITED:
            length, pos = read_varint(buf, pos, end)
            if pos + length > end:
                raise WireError(f"field {number}: length {length} runs past the end of its "
                                f"message ({end - pos} bytes left)", offset)
            yield Field(number, wire_type, (pos, pos + length), offset)
            pos += length
        elif wire_type in (FIXED32, FIXED64):
            size = 4 if wire_type == FIXED32 else 8
            if pos + size > end:
                raise WireError(f"field {number}: truncated fixed{size * 8} value", offset)
            yield Field(number, wire_type, bytes(buf[pos:pos + size]), offset)
            pos += size
        else:
            raise WireError(f"field {number}: unsupported wire type {wire_type}", offset)


def decode_string(buf: bytes | memoryview, span: tuple[int, int]) -> str:
    try:
        return bytes(buf[span[0]:span[1]]).decode("utf-8")
    except UnicodeDecodeError as err:
        raise WireError(f"invalid UTF-8 string ({err.reason})", span[0] + err.start) from None


def decode_packed_varints(buf: bytes | memoryview, span: tuple[int, int]) -> list[int]:
    values, pos = [], span[0]
    while pos < span[1]:
        value, pos = read_varint(buf, pos, span[1])
        values.append(value)
    return values


def decode_packed_reals(buf: bytes | memoryview, span: tuple[int, int], dtype: str
                        ) -> np.ndarray:
    """A packed run of little-endian ``<f4`` or ``<f8`` values (copied, native byte order)."""
    size = np.dtype(dtype).itemsize
    start, end = span
    if (end - start) % size:
        raise WireError(f"packed {dtype} field of {end - start} bytes is not a multiple of "
                        f"{size}", start)
    return np.frombuffer(buf, dtype=dtype, count=(end - start) // size, offset=start).astype(
        dtype[1:] if dtype.startswith("<") else dtype)


def decode_real(raw: bytes, wire_type: int) -> float:
    return struct.unpack("<f" if wire_type == FIXED32 else "<d", raw)[0]


# ------------------------------------------------------------------ encoding
def encode_varint(value: int) -> bytes:
    """Varint of an int; negative values as 64-bit two's complement (10 bytes), like int64."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_key(number: int, wire_type: int) -> bytes:
    return encode_varint((number << 3) | wire_type)


def encode_varint_field(number: int, value: int) -> bytes:
    return encode_key(number, VARINT) + encode_varint(int(value))


def encode_bytes_field(number: int, payload: bytes) -> bytes:
    return encode_key(number, LENGTH_DELIMITED) + encode_varint(len(payload)) + payload


def encode_string_field(number: int, text: str) -> bytes:
    return encode_bytes_field(number, text.encode("utf-8"))


def encode_packed_varints(number: int, values: list[int]) -> bytes:
    return encode_bytes_field(number, b"".join(encode_varint(int(v)) for v in values))


def encode_packed_reals(number: int, values: np.ndarray, dtype: str) -> bytes:
    """Packed repeated float (``<f4``) or double (``<f8``)."""
    return encode_bytes_field(number, np.ascontiguousarray(values, dtype=dtype).tobytes())


def encode_real_field(number: int, value: float, wire_type: int = FIXED32) -> bytes:
    """One unpacked float (fixed32) or double (fixed64) element."""
    fmt = "<f" if wire_type == FIXED32 else "<d"
    return encode_key(number, wire_type) + struct.pack(fmt, value)
