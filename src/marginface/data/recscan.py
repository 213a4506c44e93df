"""Reading and checking an insightface ``.idx`` and the record headers of its ``.rec`` at open.

:func:`read_idx_lines` parses the ``.idx`` (``key<TAB>byte_offset``), refusing duplicate keys and
two keys at one offset. :func:`scan_records` then reads every record's frame and payload header
at its offset (through ``mmap``: no image is read) and checks, before anything is sized from
them, that

- the offset holds a RecordIO record (magic) whose announced length fits in the file;
- the header's label count (``flag``) fits in the record;
- a record that carries an ``id`` (non-zero) carries its ``.idx`` key: an entry pointing at
  another record is caught (MXNet's im2rec and ``marginface pack`` write ``id = key``; a file
  whose records all carry ``id 0`` cannot be checked this way);
- labels are finite whole numbers; class ids are in ``0 .. 2**24 - 1`` (float32 holds every whole
  number up to ``2**24``; a larger "class id" is not one a float32 label can name exactly).

Each problem names the key, its ``.idx`` line and the byte offset. The caller decides whether a
bad image record is an error or is skipped and counted (``data.skip_unreadable``).
"""

from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from marginface.data.recordio import MAGIC, read_record, unpack_payload

__all__ = ["MAX_CLASS_ID", "RecordScan", "read_idx", "read_idx_lines", "scan_records",
           "whole_label"]

#: Largest class id a float32 label holds exactly (every integer up to 2**24 is a float32).
MAX_CLASS_ID = 2**24 - 1
_FRAME = struct.Struct("<II")
_HEADER = struct.Struct("<IfQQ")
_LENGTH_MASK = (1 << 29) - 1


def read_idx_lines(path: str | Path) -> tuple[dict[int, int], dict[int, int]]:
    """``({key: byte_offset}, {key: line number})`` of an ``.idx`` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"index file {path} does not exist")
    offsets: dict[int, int] = {}
    lines: dict[int, int] = {}
    at_offset: dict[int, int] = {}
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            line = raw.decode("utf-8", "replace")
            if not line.strip():
                continue
            fields = line.split()
            try:
                key, offset = int(fields[0]), int(fields[1])
                if len(fields) != 2 or offset < 0 or key < 0:
                    raise ValueError
            except (ValueError, IndexError):
                raise ValueError(
                    f"{path}, line {number}: expected 'key<TAB>byte_offset' with whole numbers "
                    f">= 0, got {line.rstrip()!r}"
                ) from None
            if key in offsets:
                raise ValueError(f"{path}, line {number}: key {key} is already on line "
                                 f"{lines[key]}")
            if offset in at_offset:
                other = at_offset[offset]
                raise ValueError(f"{path}, line {number}: key {key} points at byte offset "
                                 f"{offset}, as key {other} on line {lines[other]} does (one "
                                 "record cannot hold two keys)")
            offsets[key], lines[key], at_offset[offset] = offset, number, key
    if not offsets:
        raise ValueError(f"index file {path} is empty")
    return offsets, lines


def read_idx(path: str | Path) -> dict[int, int]:
    """Parse an ``.idx`` file (``key<TAB>byte_offset`` lines) into ``{key: offset}``."""
    return read_idx_lines(path)[0]


def whole_label(value: float, where: str, *, limit: int = MAX_CLASS_ID) -> int:
    """``value`` as an int when it is a finite whole number in ``0 .. limit``, else ValueError."""
    if not math.isfinite(value):
        raise ValueError(f"{where}: label {value} is not a finite number")
    if value != int(value):
        raise ValueError(f"{where}: label {value} is not a whole number (class ids are integers)")
    if not 0 <= value <= limit:
        raise ValueError(f"{where}: label {int(value)} is outside 0..{limit}")
    return int(value)


@dataclass
class RecordScan:
    """What the headers say, per key in ascending key order, and the problems found."""

    keys: np.ndarray                     # int64, ascending
    flags: np.ndarray                    # uint32 label count per record
    values: np.ndarray                   # float64 (N, 2): label, or the first two labels
    problems: dict[int, str] = field(default_factory=dict)   # key -> message


def _scan_one(view: mmap.mmap, rec_path: Path, offset: int, size: int,
              key: int) -> tuple[int, float, float]:
    """(flag, first label, second label or NaN) of the record at ``offset``; ValueError saying
    what is wrong (the caller prefixes where)."""
    if offset + _FRAME.size > size:
        raise ValueError(f"points past the end of the file ({size} bytes): "
                         "truncated .rec or foreign .idx")
    magic, lrec = _FRAME.unpack_from(view, offset)
    if magic != MAGIC:
        raise ValueError(f"no RecordIO record there (magic 0x{magic:08X}, expected "
                         f"0x{MAGIC:08X}): foreign or corrupt .rec, or a wrong .idx offset")
    cflag, length = lrec >> 29, lrec & _LENGTH_MASK
    if cflag not in (0, 1):
        raise ValueError(f"record starts with continuation flag {cflag} (expected 0 "
                         "or 1): the .idx points into the middle of a record")
    if offset + _FRAME.size + length > size:
        raise ValueError(f"record announces {length} bytes, only "
                         f"{size - offset - _FRAME.size} remain: truncated .rec")
    start = offset + _FRAME.size
    if cflag == 0:
        if length < _HEADER.size:
            raise ValueError(f"payload of {length} bytes is shorter than the "
                             f"{_HEADER.size}-byte insightface header")
        flag, label, id_, _ = _HEADER.unpack_from(view, start)
        if _HEADER.size + 4 * flag > length:
            raise ValueError(f"header announces {flag} float labels but the record "
                             f"has only {length - _HEADER.size} bytes after the header")
        extra = struct.unpack_from(f"<{min(flag, 2)}f", view, start + _HEADER.size)
    else:  # a split record (rare): join its parts, whatever their sizes
        with rec_path.open("rb") as stream:
            stream.seek(offset)
            header, _ = unpack_payload(read_record(stream, str(rec_path)), "split record")
        flag, id_ = header.flag, header.id
        label = float(header.label) if flag == 0 else 0.0
        extra = tuple(np.asarray(header.label, dtype=np.float64).ravel()[:2]) if flag else ()
    if id_ != 0 and id_ != key:
        raise ValueError(f"the record there carries id {id_}, not {key}: the .idx "
                         "entry points at another record")
    if flag == 0:
        return 0, float(label), math.nan
    return int(flag), float(extra[0]), float(extra[1]) if flag > 1 else math.nan


def scan_records(rec_path: Path, idx_path: Path, offsets: dict[int, int],
                 lines: dict[int, int]) -> RecordScan:
    """Check every record header at its ``.idx`` offset (module docstring); never raises for
    one bad record: its message lands in ``problems``."""
    size = rec_path.stat().st_size
    keys = np.array(sorted(offsets), dtype=np.int64)
    flags = np.zeros(len(keys), dtype=np.uint32)
    values = np.full((len(keys), 2), np.nan)
    problems: dict[int, str] = {}
    if size == 0:
        raise ValueError(f"record file {rec_path} is empty (0 bytes) but {idx_path} lists "
                         f"{len(keys)} records")
    with rec_path.open("rb") as handle, \
            mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
        for row, key in enumerate(keys.tolist()):
            offset = offsets[key]
            try:
                flags[row], values[row, 0], values[row, 1] = _scan_one(
                    view, rec_path, offset, size, key)
            except ValueError as error:
                problems[key] = (f"{rec_path}: key {key} ({idx_path.name} line {lines[key]}, "
                                 f"byte offset {offset}): {error}")
    return RecordScan(keys, flags, values, problems)
