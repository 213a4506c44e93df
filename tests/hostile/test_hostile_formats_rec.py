"""Hostile .rec/.idx files: every fault is found when the file is opened, named by key, .idx line
and byte offset, before anything is sized from the file."""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hostile_files import make_faces
from PIL import Image

from marginface.data import RecordDataset, pack_folder, read_idx
from marginface.data.recordio import RecordHeader, pack_payload, write_record

SKIP = "ValueError at open naming key, .idx line and byte offset; skipped and counted with " \
       "skip_unreadable"


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def _plain_rec(path: Path, labels: list, ids: list[int] | None = None) -> Path:
    """A .rec without insightface header: key k = image with label ``labels[k]``."""
    lines = []
    with path.open("wb") as stream:
        for key, label in enumerate(labels):
            record_id = key if ids is None else ids[key]
            header = (RecordHeader(0, float(label), record_id) if np.isscalar(label)
                      else RecordHeader(len(label), np.asarray(label, "f4"), record_id))
            lines.append(f"{key}\t{write_record(stream, pack_payload(header, _png()))}")
    path.with_suffix(".idx").write_text("\n".join(lines) + "\n")
    return path


def _packed(tmp_path: Path) -> Path:
    rec = tmp_path / "out" / "train.rec"
    pack_folder(make_faces(tmp_path / "faces", {"a": 3, "b": 1, "c": 2}), rec)
    return rec


def _patch(rec: Path, key: int, at: int, data: bytes) -> None:
    """Overwrite ``data`` at byte ``at`` of record ``key`` (8 framing bytes, then the payload)."""
    offset = read_idx(rec.with_suffix(".idx"))[key] + at
    blob = bytearray(rec.read_bytes())
    blob[offset:offset + len(data)] = data
    rec.write_bytes(bytes(blob))


def _refused(rec: Path, pattern: str) -> None:
    """Opening ``rec`` is a ValueError matching ``pattern``."""
    with pytest.raises(ValueError, match=pattern):
        RecordDataset(rec)


def _set_header_labels(rec: Path, key: int, values: tuple[float, float]) -> None:
    """Overwrite the two float labels of record ``key`` in place (its framing stays valid)."""
    _patch(rec, key, 8 + 24, struct.pack("<2f", *values))


@pytest.mark.fault(kind=".rec header record", fault="announces 1e9 images",
                   behaviour="immediate ValueError (key count vs the .idx and the file size); "
                             "no allocation, no loop")
def test_header_announcing_a_billion_images(tmp_path):
    rec = _packed(tmp_path)
    _set_header_labels(rec, 0, (1e9, 1e9 + 3))
    tracemalloc.start()
    start = time.perf_counter()
    _refused(rec, r"header record \(key 0\) announces 999999999 images")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.perf_counter() - start < 1.0 and peak < 8 * 2**20


@pytest.mark.fault(kind=".rec header record", fault="[first, end) reversed / fractional",
                   behaviour="ValueError naming the header record")
@pytest.mark.parametrize("values, message", [((5.0, 2.0), "needs 1 <= 5 <= 2"),
                                             ((6.5, 9.0), "6.5 is not a whole number")],
                         ids=["reversed", "fractional"])
def test_header_with_impossible_ranges(tmp_path, values, message):
    rec = _packed(tmp_path)
    _set_header_labels(rec, 0, values)
    _refused(rec, rf"header record \(key 0\).*{message}")


@pytest.mark.fault(kind=".rec identity record", fault="ranges overlap / leave images uncovered",
                   behaviour="ValueError naming the identity record; uncovered images skipped "
                             "and counted with skip_unreadable")
def test_identity_ranges_checked(tmp_path):
    rec = _packed(tmp_path)  # identities 7, 8, 9 hold [1,4) [4,5) [5,7)
    _set_header_labels(rec, 8, (3.0, 5.0))
    _refused(rec, "identity record key 8 holds images \\[3, 5\\), which "
                  "overlap those of identity record key 7")
    _set_header_labels(rec, 8, (4.0, 4.0))  # image 4 now belongs to nobody
    _refused(rec, "image key 4 is in no identity record's range")
    dataset = RecordDataset(rec, skip_unreadable=True)
    assert dataset.keys.tolist() == [1, 2, 3, 5, 6] and dataset.skipped[0][0] == "4"


@pytest.mark.fault(kind=".idx", fault="entry points at another record (two offsets swapped)",
                   behaviour="ValueError naming the .idx line, the key and the id found there")
def test_idx_entry_pointing_at_another_record(tmp_path):
    rec = _packed(tmp_path)
    idx = rec.with_suffix(".idx")
    lines = idx.read_text().splitlines()
    key2, key3 = lines[2].split("\t"), lines[3].split("\t")
    lines[2], lines[3] = f"2\t{key3[1]}", f"3\t{key2[1]}"
    idx.write_text("\n".join(lines) + "\n")
    _refused(rec, r"key 2 \(train.idx line 3, byte offset \d+\): the "
                  "record there carries id 3, not 2")


@pytest.mark.fault(kind=".idx", fault="entry points into the middle of a record",
                   behaviour="ValueError naming the key, .idx line and byte offset (no magic)")
def test_idx_offset_inside_a_record(tmp_path):
    rec = _packed(tmp_path)
    idx = rec.with_suffix(".idx")
    offsets = read_idx(idx)
    idx.write_text(idx.read_text().replace(f"5\t{offsets[5]}\n", f"5\t{offsets[5] + 12}\n"))
    _refused(rec, rf"key 5 \(train.idx line 6, byte offset "
                  rf"{offsets[5] + 12}\): no RecordIO record there")


@pytest.mark.fault(kind=".idx", fault="duplicate key / two keys at one offset",
                   behaviour="ValueError naming both .idx lines")
def test_idx_duplicates(tmp_path):
    rec = _packed(tmp_path)
    idx = rec.with_suffix(".idx")
    good = idx.read_text()
    idx.write_text(good + "3\t0\n")
    _refused(rec, r"line 11: key 3 is already on line 4")
    idx.write_text(good + "10\t0\n")
    _refused(rec, r"line 11: key 10 points at byte offset 0, as key 0 "
                  r"on line 1 does")


@pytest.mark.fault(kind=".idx", fault="zero-length, blank-only, negative offset, text garbage",
                   behaviour="ValueError naming the file (and line)")
@pytest.mark.parametrize("text, message", [("", "is empty"), ("\n\n  \n", "is empty"),
                                           ("0\t-8\n", "line 1: expected"),
                                           ("0\t0\n1\t1e3\n", "line 2: expected"),
                                           ("\xff\xfe\n", "line 1: expected")],
                         ids=["empty", "blank-lines", "negative-offset", "float-offset",
                              "not-utf8"])
def test_idx_malformed(tmp_path, text, message):
    rec = _packed(tmp_path)
    rec.with_suffix(".idx").write_text(text, encoding="latin-1")
    _refused(rec, message)


@pytest.mark.fault(kind=".rec", fault="zero-length .rec with an .idx / wrong magic everywhere",
                   behaviour="ValueError naming the file")
def test_empty_or_foreign_rec(tmp_path):
    rec = _packed(tmp_path)
    rec.write_bytes(b"")
    _refused(rec, r"train.rec is empty \(0 bytes\)")
    rec.write_bytes(b"GIF89a" + b"\0" * 4000)
    _refused(rec, r"key 0 .*no RecordIO record there \(magic 0x38464947")


@pytest.mark.fault(kind=".rec", fault="truncated mid-record",
                   behaviour="ValueError at open (not at a later training step) naming the "
                             "first cut record")
def test_truncated_rec_found_at_open(tmp_path):
    rec = _packed(tmp_path)
    offsets = read_idx(rec.with_suffix(".idx"))
    rec.write_bytes(rec.read_bytes()[: offsets[4] + 20])
    _refused(rec, r"key 4 .*record announces \d+ bytes, only 12 remain")


@pytest.mark.fault(kind=".rec record", fault="label 1.5", behaviour="ValueError naming the record "
                   "(never truncated to 1)")
def test_fractional_label(tmp_path):
    rec = _plain_rec(tmp_path / "p.rec", [0.0, 1.5, 2.0])
    _refused(rec, r"p.rec: record key 1: label 1.5 is not a whole number")


@pytest.mark.fault(kind=".rec record", fault="NaN / inf / negative / 1e30 label",
                   behaviour="clear ValueError naming the record, no raw traceback; skipped and "
                             "counted with skip_unreadable")
@pytest.mark.parametrize("label, message", [(float("nan"), "label nan is not a finite"),
                                            (float("inf"), "label inf is not a finite"),
                                            (-1.0, r"label -1 is outside 0\.\.16777215"),
                                            (1e30, r"label \d{31} is outside 0\.\.16777215")],
                         ids=["nan", "inf", "negative", "1e30"])
def test_non_finite_or_out_of_range_label(tmp_path, label, message):
    rec = _plain_rec(tmp_path / "p.rec", [0.0, label, [2.0, 7.0]])
    _refused(rec, rf"record key 1: {message}")
    dataset = RecordDataset(rec, skip_unreadable=True)
    assert dataset.keys.tolist() == [0, 2] and dataset.labels.tolist() == [0, 2]
    assert [key for key, _ in dataset.skipped] == ["1"]


@pytest.mark.fault(kind=".rec record", fault="header announces 1e9 float labels",
                   behaviour="ValueError (labels vs record length) before anything is read")
def test_label_count_beyond_the_record(tmp_path):
    rec = _plain_rec(tmp_path / "p.rec", [0.0, 1.0])
    _patch(rec, 1, 8, struct.pack("<I", 10**9))  # the header's flag: the label count
    _refused(rec, "key 1 .*announces 1000000000 float labels")


@pytest.mark.fault(kind=".rec record", fault="corrupt image bytes inside a valid record",
                   behaviour="training stops before step 1 naming the key, or with "
                             "data.skip_unreadable skips and counts it")
def test_training_set_checks_images_before_training(tmp_path):
    from marginface.train.config import DataConfig
    from marginface.train.real_data import build_real_dataset

    rec = _packed(tmp_path)
    _patch(rec, 2, 8 + 24, b"XX" + b"\0" * 200)  # key 2's JPEG: no start marker, zeros
    with pytest.raises(ValueError, match=r"key 2: cannot decode image.*data.skip_unreadable"):
        build_real_dataset(DataConfig(kind="rec", path=str(rec)), (20, 24))
    dataset = build_real_dataset(DataConfig(kind="rec", path=str(rec), skip_unreadable=True),
                                 (20, 24))
    assert len(dataset) == 5 and [k for k, _ in dataset.skipped] == ["2"]


@pytest.mark.fault(kind=".rec record", fault="records from a writer that leaves every id 0",
                   behaviour="loads (ids cannot be checked there; duplicate offsets still are)")
def test_records_without_ids_still_load(tmp_path):
    rec = _plain_rec(tmp_path / "p.rec", [0.0, 1.0, 1.0], ids=[0, 0, 0])
    assert RecordDataset(rec).labels.tolist() == [0, 1, 1]
    rec = _plain_rec(tmp_path / "q.rec", [0.0, 1.0, 1.0], ids=[0, 2, 0])
    _refused(rec, "key 1 .*carries id 2, not 1")


@pytest.mark.fault(kind=".idx", fault="CRLF line endings, lines out of key order",
                   behaviour="loads as the same dataset (only the content is checked)")
def test_idx_crlf_and_shuffled_lines(tmp_path):
    rec = _packed(tmp_path)
    idx = rec.with_suffix(".idx")
    expected = RecordDataset(rec).labels.tolist()
    lines = idx.read_text().splitlines()
    idx.write_bytes("\r\n".join(reversed(lines)).encode() + b"\r\n")
    assert RecordDataset(rec).labels.tolist() == expected == [0, 0, 0, 1, 2, 2]


@pytest.mark.fault(kind=".rec record", fault="payload holding the RecordIO magic (a split record)",
                   behaviour="checked at open through its joined parts; loads with its label")
def test_split_record_is_scanned(tmp_path):
    from marginface.data.recordio import MAGIC_BYTES

    data = MAGIC_BYTES + b"\1\2\3\4" + MAGIC_BYTES  # payload offsets 24 and 32: both aligned
    rec = tmp_path / "s.rec"
    with rec.open("wb") as stream:
        offsets = [write_record(stream, pack_payload(RecordHeader(0, float(k), k), data))
                   for k in range(2)]
    rec.with_suffix(".idx").write_text("".join(f"{k}\t{o}\n" for k, o in enumerate(offsets)))
    dataset = RecordDataset(rec)
    assert dataset.labels.tolist() == [0, 1] and dataset.read(1)[1] == data
    _patch(rec, 1, 8 + 8, struct.pack("<Q", 5))  # key 1's id, inside the split record's part 1
    _refused(rec, r"key 1 .*carries id 5, not 1")


@pytest.mark.fault(kind=".rec identity record", fault="an unreadable identity record",
                   behaviour="ValueError naming it; with skip_unreadable its images are skipped, "
                             "each naming the identity record, and the other classes load")
def test_unreadable_identity_record(tmp_path):
    rec = _packed(tmp_path)  # identity 9 holds images [5, 7)
    _patch(rec, 9, 0, b"XXXX")
    _refused(rec, r"key 9 \(train.idx line 10, .*no RecordIO record there")
    dataset = RecordDataset(rec, skip_unreadable=True)
    assert dataset.keys.tolist() == [1, 2, 3, 4] and dataset.num_classes == 3
    assert [k for k, _ in dataset.skipped] == ["5", "6"]
    assert "unreadable identity record(s) [9]" in dataset.skipped[0][1]
