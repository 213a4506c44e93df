"""RecordIO framing: round trips, split records, truncated and foreign files."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marginface.data.recordio import (
    MAGIC,
    RecordHeader,
    pack_payload,
    read_record,
    unpack_payload,
    write_record,
)

MAGIC_BYTES = struct.pack("<I", MAGIC)


def _frames(blob: bytes) -> list[tuple[int, int]]:
    """(cflag, length) of every physical part in a written stream."""
    out, position = [], 0
    while position < len(blob):
        magic, lrec = struct.unpack_from("<II", blob, position)
        assert magic == MAGIC
        length = lrec & ((1 << 29) - 1)
        out.append((lrec >> 29, length))
        position += 8 + length + (-length) % 4
    return out


def test_whole_record_round_trip_and_padding():
    stream = io.BytesIO()
    offsets = [write_record(stream, b"abcde"), write_record(stream, b"xyz")]
    blob = stream.getvalue()
    assert offsets == [0, 16]  # 8 header + 5 payload + 3 padding
    assert len(blob) % 4 == 0
    assert _frames(blob) == [(0, 5), (0, 3)]
    stream.seek(0)
    assert read_record(stream) == b"abcde"
    assert read_record(stream) == b"xyz"


def test_split_record_where_magic_is_aligned():
    payload = b"AAAA" + MAGIC_BYTES + b"BBBBBBBB" + MAGIC_BYTES + b"CC"
    stream = io.BytesIO()
    write_record(stream, payload)
    # cut at both aligned magics, the magic bytes themselves dropped
    assert _frames(stream.getvalue()) == [(1, 4), (2, 8), (3, 2)]
    stream.seek(0)
    assert read_record(stream) == payload


def test_unaligned_magic_is_not_split():
    payload = b"AB" + MAGIC_BYTES + b"CD"
    stream = io.BytesIO()
    write_record(stream, payload)
    assert _frames(stream.getvalue()) == [(0, 8)]
    stream.seek(0)
    assert read_record(stream) == payload


def test_magic_at_start_and_end():
    payload = MAGIC_BYTES + b"1234" + MAGIC_BYTES
    stream = io.BytesIO()
    write_record(stream, payload)
    assert _frames(stream.getvalue()) == [(1, 0), (2, 4), (3, 0)]
    stream.seek(0)
    assert read_record(stream) == payload


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([b"\x00", b"\xff", b"ab", MAGIC_BYTES, b"\x0a\x23"]), max_size=30))
def test_round_trip_any_payload(chunks):
    payload = b"".join(chunks)
    stream = io.BytesIO()
    write_record(stream, payload)
    write_record(stream, b"next")
    stream.seek(0)
    assert read_record(stream) == payload
    assert read_record(stream) == b"next"


def test_truncated_and_foreign_errors_name_byte_offset():
    stream = io.BytesIO()
    write_record(stream, b"first")
    second = write_record(stream, b"0123456789")
    blob = stream.getvalue()
    truncated = io.BytesIO(blob[:-6])
    truncated.seek(second)
    with pytest.raises(ValueError, match=f"truncated record at byte offset {second}"):
        read_record(truncated, "x.rec")
    foreign = io.BytesIO(b"GIF89a" + b"\0" * 20)
    with pytest.raises(ValueError, match="byte offset 0: magic is 0x"):
        read_record(foreign, "y.rec")
    short = io.BytesIO(blob[:3])
    with pytest.raises(ValueError, match="byte offset 0"):
        read_record(short)


def test_broken_split_sequence():
    stream = io.BytesIO()
    write_record(stream, b"AAAA" + MAGIC_BYTES + b"BBBB")
    blob = stream.getvalue()
    # drop the last part: the reader meets EOF inside a split record
    first_part = blob[: 8 + 4]
    with pytest.raises(ValueError, match="byte offset 12"):
        read_record(io.BytesIO(first_part + blob[:8] + b"XXXX"), "z.rec")


def test_payload_header_scalar_and_array_labels():
    header, rest = unpack_payload(pack_payload(RecordHeader(0, 7.0, 3, 4), b"img"))
    assert (header.flag, header.label, header.id, header.id2, rest) == (0, 7.0, 3, 4, b"img")
    labels = np.array([5.0, 9.0], dtype=np.float32)
    header, rest = unpack_payload(pack_payload(RecordHeader(2, labels), b"jpg"))
    assert header.flag == 2 and rest == b"jpg"
    np.testing.assert_array_equal(header.label, labels)
    with pytest.raises(ValueError, match="shorter"):
        unpack_payload(b"\0" * 10)
    with pytest.raises(ValueError, match="announces 5 float labels"):
        unpack_payload(struct.pack("<IfQQ", 5, 0.0, 0, 0) + b"\0" * 8)
