"""RecordIO framing (dmlc / MXNet ``.rec``) in pure Python, and the insightface record header.

A record on disk (dmlc-core's RecordIO; docs/data.md#recordio) is ``uint32 magic 0xCED7230A``,
``uint32 lrec`` with ``cflag = lrec >> 29`` and ``length = lrec & (2**29 - 1)``, the payload, then
zero padding to a multiple of 4 bytes. Little-endian. A payload that contains the magic at a 4-byte
aligned offset is written as several parts (cflag 1 = first, 2 = middle, 3 = last); the magic itself
is dropped at each cut and the reader re-inserts it when joining the parts. cflag 0 is a whole
record.

The payload of an insightface record starts with the header ``struct IfQQ`` (flag u32, label f32,
id u64, id2 u64); if ``flag > 0``, ``flag`` float32 labels follow and replace ``label``. The rest
is the encoded image.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
_LENGTH_MASK = (1 << 29) - 1
_HEADER = struct.Struct("<IfQQ")

__all__ = [
    "MAGIC",
    "RecordHeader",
    "pack_payload",
    "unpack_payload",
    "read_record",
    "write_record",
]


@dataclass(frozen=True)
class RecordHeader:
    """insightface's ``IRHeader``: ``label`` is a float, or a float32 array when ``flag > 0``."""

    flag: int
    label: float | np.ndarray
    id: int = 0
    id2: int = 0


def pack_payload(header: RecordHeader, data: bytes = b"") -> bytes:
    """Serialise ``header`` (+ its label array when it is one) followed by ``data``."""
    label = header.label
    if isinstance(label, (int, float)):
        return _HEADER.pack(0, float(label), header.id, header.id2) + data
    values = np.asarray(label, dtype="<f4").ravel()
    return _HEADER.pack(values.size, 0.0, header.id, header.id2) + values.tobytes() + data


def unpack_payload(payload: bytes, where: str = "record") -> tuple[RecordHeader, bytes]:
    """Split a payload into its header and the remaining bytes (the encoded image)."""
    if len(payload) < _HEADER.size:
        raise ValueError(
            f"{where}: payload of {len(payload)} bytes is shorter than the {_HEADER.size}-byte "
            "insightface header"
        )
    flag, label, id_, id2 = _HEADER.unpack_from(payload)
    offset = _HEADER.size
    if flag > 0:
        end = offset + 4 * flag
        if end > len(payload):
            raise ValueError(
                f"{where}: header announces {flag} float labels but the payload has only "
                f"{len(payload) - offset} bytes after the header"
            )
        labels = np.frombuffer(payload, dtype="<f4", count=flag, offset=offset).copy()
        return RecordHeader(flag, labels, id_, id2), payload[end:]
    return RecordHeader(flag, float(label), id_, id2), payload[offset:]


def _read_part(stream: BinaryIO, path: str) -> tuple[int, bytes]:
    offset = stream.tell()
    head = stream.read(8)
    if len(head) < 8:
        raise ValueError(
            f"{path}: truncated record at byte offset {offset}: expected an 8-byte record "
            f"header, found {len(head)} bytes"
        )
    magic, lrec = struct.unpack("<II", head)
    if magic != MAGIC:
        raise ValueError(
            f"{path}: not a RecordIO record at byte offset {offset}: magic is 0x{magic:08X}, "
            f"expected 0x{MAGIC:08X} (foreign or corrupt file, or a wrong .idx offset)"
        )
    cflag, length = lrec >> 29, lrec & _LENGTH_MASK
    data = stream.read(length)
    if len(data) < length:
        raise ValueError(
            f"{path}: truncated record at byte offset {offset}: header announces {length} "
            f"bytes, only {len(data)} remain"
        )
    stream.read((-length) % 4)  # padding; a missing tail of padding at EOF is harmless
    return cflag, data


def read_record(stream: BinaryIO, path: str = "<stream>") -> bytes:
    """Read one logical record at the stream's position, joining split parts."""
    start = stream.tell()
    cflag, data = _read_part(stream, path)
    if cflag == 0:
        return data
    if cflag != 1:
        raise ValueError(
            f"{path}: record at byte offset {start} starts with continuation flag {cflag} "
            "(expected 0 or 1)"
        )
    parts = [data]
    while True:
        part_offset = stream.tell()
        cflag, data = _read_part(stream, path)
        if cflag not in (2, 3):
            raise ValueError(
                f"{path}: split record starting at byte offset {start} is broken at byte offset "
                f"{part_offset}: continuation flag {cflag} (expected 2 or 3)"
            )
        parts.append(data)
        if cflag == 3:
            return MAGIC_BYTES.join(parts)


def _frame(cflag: int, data: bytes) -> bytes:
    if len(data) > _LENGTH_MASK:
        raise ValueError(f"record part of {len(data)} bytes exceeds the RecordIO limit 2**29-1")
    return struct.pack("<II", MAGIC, (cflag << 29) | len(data)) + data + b"\0" * ((-len(data)) % 4)


def write_record(stream: BinaryIO, payload: bytes) -> int:
    """Append one logical record; split it wherever the magic sits 4-byte aligned.

    Returns the byte offset at which the record starts (the value to store in the .idx).
    """
    offset = stream.tell()
    cuts = []
    position = payload.find(MAGIC_BYTES)
    while position != -1:
        if position % 4 == 0:
            cuts.append(position)
            position = payload.find(MAGIC_BYTES, position + 4)
        else:
            position = payload.find(MAGIC_BYTES, position + 1)
    if not cuts:
        stream.write(_frame(0, payload))
        return offset
    starts = [0] + [cut + 4 for cut in cuts]
    ends = cuts + [len(payload)]
    for index, (begin, end) in enumerate(zip(starts, ends, strict=True)):
        cflag = 1 if index == 0 else (3 if index == len(cuts) else 2)
        stream.write(_frame(cflag, payload[begin:end]))
    return offset
