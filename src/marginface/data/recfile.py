"""insightface ``.rec/.idx`` training sets: a streaming reader and a writer (``marginface pack``).

Layout (insightface's datasets; docs/data.md#recordio): record 0 has ``flag 2`` and label
``[first_identity_key, end_key]``; keys ``1 .. first_identity_key - 1`` are images whose label is
the class id; identity records ``first_identity_key .. end_key - 1`` hold ``[img_start, img_end)``
of each class in class order. Without such a header every key of the ``.idx`` is an image. A
``property`` file beside the .rec holds ``num_classes,H,W``.

The reader keeps only the ``.idx`` offsets in memory and reads one record per item. The file is
opened lazily in the process that reads it, so a dataset handed to DataLoader workers gets one file
handle per worker (handles are never pickled).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from marginface.data.imagefolder import ImageFolderDataset
from marginface.data.recordio import (
    RecordHeader,
    pack_payload,
    read_record,
    unpack_payload,
    write_record,
)
from marginface.data.transforms import DECODE_ERRORS, decode_image

__all__ = ["RecordDataset", "read_idx", "pack_folder", "PackReport"]


def read_idx(path: str | Path) -> dict[int, int]:
    """Parse an ``.idx`` file (``key<TAB>byte_offset`` lines) into ``{key: offset}``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"index file {path} does not exist")
    offsets: dict[int, int] = {}
    with path.open() as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            fields = line.split()
            try:
                key, offset = int(fields[0]), int(fields[1])
                if len(fields) != 2 or offset < 0:
                    raise ValueError
            except (ValueError, IndexError):
                raise ValueError(
                    f"{path}, line {number}: expected 'key<TAB>byte_offset', got {line.rstrip()!r}"
                ) from None
            offsets[key] = offset
    if not offsets:
        raise ValueError(f"index file {path} is empty")
    return offsets


class RecordDataset(Dataset):
    """``dataset[i] -> (transform(PIL RGB image), label)`` streamed from an insightface .rec."""

    def __init__(
        self,
        rec_path: str | Path,
        idx_path: str | Path | None = None,
        transform: Callable[[Image.Image], Any] | None = None,
    ) -> None:
        self.rec_path = Path(rec_path)
        if not self.rec_path.is_file():
            raise FileNotFoundError(f"record file {self.rec_path} does not exist")
        self.idx_path = Path(idx_path) if idx_path else self.rec_path.with_suffix(".idx")
        self.offsets = read_idx(self.idx_path)
        self.size = self.rec_path.stat().st_size
        self.transform = transform
        self._handle: BinaryIO | None = None
        self._pid: int | None = None
        self.identity_ranges: np.ndarray | None = None
        header, _ = self.read(min(self.offsets))
        if header.flag > 0 and min(self.offsets) == 0:
            # insightface header record: [first identity key, end key)
            first, end = (int(v) for v in np.asarray(header.label)[:2])
            self.keys = np.arange(1, first, dtype=np.int64)
            self._identity_keys = range(first, end)
        else:
            self.keys = np.array(sorted(self.offsets), dtype=np.int64)
            self._identity_keys = range(0)
        missing = [int(k) for k in self.keys if int(k) not in self.offsets][:3]
        if missing:
            raise ValueError(f"{self.idx_path}: image keys {missing} are missing from the index")
        self._labels: np.ndarray | None = None

    # -- file access --------------------------------------------------------------------------
    def _stream(self) -> BinaryIO:
        if self._handle is None or self._pid != os.getpid():
            self._handle = self.rec_path.open("rb")
            self._pid = os.getpid()
        return self._handle

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handle"] = None  # every process opens its own
        return state

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def read(self, key: int) -> tuple[RecordHeader, bytes]:
        """Header and image bytes of the record with ``.idx`` key ``key``."""
        if key not in self.offsets:
            raise KeyError(f"{self.rec_path}: key {key} is not in {self.idx_path}")
        offset = self.offsets[key]
        if offset >= self.size:
            raise ValueError(
                f"{self.rec_path}: key {key} points at byte offset {offset}, past the end of "
                f"the file ({self.size} bytes): truncated .rec or foreign .idx"
            )
        stream = self._stream()
        stream.seek(offset)
        payload = read_record(stream, str(self.rec_path))
        return unpack_payload(payload, f"{self.rec_path} (key {key}, byte offset {offset})")

    # -- labels -------------------------------------------------------------------------------
    @property
    def labels(self) -> np.ndarray:
        """Class id of every image, from the identity records (or every image's header)."""
        if self._labels is None:
            labels = np.empty(len(self.keys), dtype=np.int64)
            if len(self._identity_keys):
                first_image = int(self.keys[0]) if len(self.keys) else 1
                for class_id, key in enumerate(self._identity_keys):
                    start, end = (int(v) for v in np.asarray(self.read(key)[0].label)[:2])
                    labels[start - first_image : end - first_image] = class_id
            else:
                for index, key in enumerate(self.keys):
                    labels[index] = self._label_of(self.read(int(key))[0])
            self._labels = labels
        return self._labels

    @property
    def num_classes(self) -> int:
        if len(self._identity_keys):
            return len(self._identity_keys)
        return int(self.labels.max()) + 1 if len(self.keys) else 0

    @staticmethod
    def _label_of(header: RecordHeader) -> int:
        label = header.label
        return int(label if isinstance(label, float) else np.asarray(label)[0])

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        key = int(self.keys[index])
        header, data = self.read(key)
        try:
            image = decode_image(data)
        except DECODE_ERRORS as error:
            raise ValueError(f"{self.rec_path}: key {key}: cannot decode image: {error}") from error
        return (self.transform(image) if self.transform else image), self._label_of(header)


class PackReport(dict):
    """Counts of a ``pack_folder`` run: images, classes, skipped (with reasons), paths."""


def pack_folder(
    folder: str | Path, rec_path: str | Path, *, skip_undecodable: bool = False
) -> PackReport:
    """Write an image folder as insightface ``.rec`` + ``.idx`` + ``property``.

    Encoded files are stored byte for byte (JPEG stays JPEG); every image is decoded once to
    check it and its size. All images must share one size (that of an aligned set).
    """
    dataset = ImageFolderDataset(folder, skip_undecodable=skip_undecodable)
    rec_path = Path(rec_path)
    rec_path.parent.mkdir(parents=True, exist_ok=True)
    idx_path = rec_path.with_suffix(".idx")
    num_images, num_classes = len(dataset), dataset.num_classes
    first_identity = num_images + 1
    size: tuple[int, int] | None = None
    ranges = np.zeros((num_classes, 2), dtype=np.int64)
    index_lines = []
    with rec_path.open("wb") as stream:
        header = RecordHeader(2, np.array([first_identity, first_identity + num_classes], "f4"))
        index_lines.append(f"0\t{write_record(stream, pack_payload(header))}")
        for position, (path, label) in enumerate(dataset.samples):
            key = position + 1
            image = decode_image(path)
            if size is None:
                size = image.size
            elif image.size != size:
                raise ValueError(
                    f"image {path} is {image.size[0]}x{image.size[1]}, the first image was "
                    f"{size[0]}x{size[1]}: a .rec holds one aligned size"
                )
            payload = pack_payload(RecordHeader(0, float(label)), path.read_bytes())
            index_lines.append(f"{key}\t{write_record(stream, payload)}")
            if position == 0 or dataset.samples[position - 1][1] != label:
                ranges[label, 0] = key
            ranges[label, 1] = key + 1
        for class_id in range(num_classes):
            header = RecordHeader(2, ranges[class_id].astype("f4"))
            key = first_identity + class_id
            index_lines.append(f"{key}\t{write_record(stream, pack_payload(header))}")
    idx_path.write_text("\n".join(index_lines) + "\n")
    assert size is not None
    property_path = rec_path.parent / "property"
    property_path.write_text(f"{num_classes},{size[1]},{size[0]}\n")
    return PackReport(
        images=num_images,
        classes=num_classes,
        skipped=[(str(p), reason) for p, reason in dataset.skipped],
        rec=str(rec_path),
        idx=str(idx_path),
        property=str(property_path),
        size_hw=[size[1], size[0]],
    )
