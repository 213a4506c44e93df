"""insightface .rec/.idx: folder -> pack -> streaming reader, DataLoader workers, errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from marginface.data import ImageFolderDataset, RecordDataset, pack_folder, read_idx
from marginface.data.recordio import RecordHeader, pack_payload, write_record
from marginface.data.transforms import Preprocessing, TrainTransform


def test_pack_round_trip(image_folder, tmp_path):
    report = pack_folder(image_folder, tmp_path / "out" / "train.rec")
    assert (report["images"], report["classes"], report["size_hw"]) == (6, 3, [20, 24])
    assert (tmp_path / "out" / "property").read_text().strip() == "3,20,24"
    offsets = read_idx(tmp_path / "out" / "train.idx")
    assert sorted(offsets) == list(range(0, 1 + 6 + 3))  # header, images, identities
    dataset = RecordDataset(tmp_path / "out" / "train.rec")
    folder = ImageFolderDataset(image_folder)
    assert len(dataset) == 6 and dataset.num_classes == 3
    assert dataset.labels.tolist() == [0, 0, 0, 1, 2, 2] == folder.labels
    for index in range(6):
        image, label = dataset[index]
        expected, expected_label = folder[index]
        assert label == expected_label
        # stored byte for byte: identical decode
        np.testing.assert_array_equal(np.asarray(image), np.asarray(expected))
    # the identity records hold [start, end) image keys
    starts_ends = [dataset.read(k)[0].label.tolist() for k in range(7, 10)]
    assert starts_ends == [[1, 4], [4, 5], [5, 7]]
    header = dataset.read(0)[0]
    assert header.flag == 2 and header.label.tolist() == [7, 10]


def test_reader_streams_and_works_with_workers(image_folder, tmp_path):
    pack_folder(image_folder, tmp_path / "t.rec")
    transform = TrainTransform(Preprocessing(mean=(127.5,) * 3, std=(127.5,) * 3), (20, 24), 0.0)
    dataset = RecordDataset(tmp_path / "t.rec", transform=transform)
    dataset[0]
    assert dataset._handle is not None  # opened by the first read in this process
    loader = DataLoader(dataset, batch_size=4, num_workers=2)
    batches = list(loader)
    images = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    assert images.shape == (6, 3, 20, 24)
    assert labels.tolist() == [0, 0, 0, 1, 2, 2]
    assert float(images.abs().max()) <= 1.0
    direct = torch.stack([dataset[i][0] for i in range(6)])
    torch.testing.assert_close(images, direct)


def test_rec_without_header_and_with_array_labels(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(buffer, format="PNG")
    lines = []
    with (tmp_path / "plain.rec").open("wb") as stream:
        for key, label in enumerate([3.0, np.array([1.0, 0.5], np.float32)]):
            header = RecordHeader(0, label) if isinstance(label, float) else RecordHeader(2, label)
            offset = write_record(stream, pack_payload(header, buffer.getvalue()))
            lines.append(f"{key}\t{offset}")
    (tmp_path / "plain.idx").write_text("\n".join(lines) + "\n")
    # key 0 has a scalar label (flag 0): no insightface header, every key is an image
    dataset = RecordDataset(tmp_path / "plain.rec")
    assert len(dataset) == 2
    assert dataset.labels.tolist() == [3, 1]
    image, label = dataset[1]
    assert label == 1 and image.getpixel((0, 0)) == (10, 200, 30)


def test_truncated_rec_names_byte_offset(image_folder, tmp_path):
    pack_folder(image_folder, tmp_path / "t.rec")
    blob = (tmp_path / "t.rec").read_bytes()
    offsets = read_idx(tmp_path / "t.idx")
    (tmp_path / "t.rec").write_bytes(blob[: offsets[3] + 40])
    # found when the file is opened (every record header is read), not at some later step
    with pytest.raises(ValueError, match=rf"key 3 \(t.idx line 4, byte offset {offsets[3]}\)"
                                         ".*truncated .rec"):
        RecordDataset(tmp_path / "t.rec")
    # the identity records at the end are cut off too: no image has a label left
    with pytest.raises(ValueError, match="no readable image record"):
        RecordDataset(tmp_path / "t.rec", skip_unreadable=True)


def test_corrupt_record_skipped_and_counted(image_folder, tmp_path):
    pack_folder(image_folder, tmp_path / "t.rec")
    offsets = read_idx(tmp_path / "t.idx")
    blob = bytearray((tmp_path / "t.rec").read_bytes())
    blob[offsets[3]:offsets[3] + 4] = b"XXXX"  # key 3's magic
    (tmp_path / "t.rec").write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="key 3 .*magic 0x58585858.*data.skip_unreadable"):
        RecordDataset(tmp_path / "t.rec")
    dataset = RecordDataset(tmp_path / "t.rec", skip_unreadable=True)
    assert dataset.keys.tolist() == [1, 2, 4, 5, 6]
    assert dataset.labels.tolist() == [0, 0, 1, 2, 2] and dataset.num_classes == 3
    assert [key for key, _ in dataset.skipped] == ["3"]
    assert [label for _, label in dataset] == [0, 0, 1, 2, 2]


def test_foreign_file_and_bad_idx(tmp_path):
    (tmp_path / "x.rec").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    (tmp_path / "x.idx").write_text("0\t0\n")
    with pytest.raises(ValueError, match=r"offset 0\): no RecordIO record there \(magic 0x474E5"):
        RecordDataset(tmp_path / "x.rec")
    (tmp_path / "x.idx").write_text("0\t0\nnot a line\n")
    with pytest.raises(ValueError, match="line 2"):
        RecordDataset(tmp_path / "x.rec")
    with pytest.raises(FileNotFoundError, match="missing.rec"):
        RecordDataset(tmp_path / "missing.rec")


def test_pack_rejects_mixed_sizes(tmp_path, folder_factory):
    make_folder = folder_factory
    make_folder(tmp_path / "f", {"a": 1})
    make_folder(tmp_path / "f", {"b": 1}, size=(30, 30))
    with pytest.raises(ValueError, match="one aligned size"):
        pack_folder(tmp_path / "f", tmp_path / "o.rec")
