"""insightface ``.rec/.idx`` training sets: a streaming reader (the writer is ``recpack``).

Layout (insightface's datasets; docs/data.md#recordio): record 0 has ``flag 2`` and label
``[first_identity_key, end_key]``; keys ``1 .. first_identity_key - 1`` are images whose label is
the class id; identity records ``first_identity_key .. end_key - 1`` hold ``[img_start, img_end)``
of each class in class order. Without such a header every key of the ``.idx`` is an image. A
``property`` file beside the .rec holds ``num_classes,H,W``.

Opening reads every record's header once (:mod:`marginface.data.recscan`: offsets, framing, ids,
labels) and checks the layout against the ``.idx`` before sizing anything from it, so a corrupt
file fails at open, not at some later training step. Then only the ``.idx`` offsets and labels
stay in memory and one record is read per item. The file is opened lazily in the process that
reads it, so a dataset handed to DataLoader workers gets one file handle per worker.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from marginface.data.recordio import RecordHeader, read_record, unpack_payload
from marginface.data.recpack import PackReport, pack_folder
from marginface.data.recscan import RecordScan, read_idx, read_idx_lines, scan_records, whole_label
from marginface.data.transforms import DECODE_ERRORS, decode_image

__all__ = ["RecordDataset", "read_idx", "pack_folder", "PackReport"]

_SKIP_HINT = "(skip_unreadable=True, data.skip_unreadable in training, skips and counts them)"


class RecordDataset(Dataset):
    """``dataset[i] -> (transform(PIL RGB image), label)`` streamed from an insightface .rec.

    Opening checks every record header and the layout the header record announces, before
    anything is sized from it. A bad image record is an error, or with ``skip_unreadable`` left
    out and listed in ``skipped`` as ``(key, reason)``.
    """

    def __init__(
        self,
        rec_path: str | Path,
        idx_path: str | Path | None = None,
        transform: Callable[[Image.Image], Any] | None = None,
        *,
        skip_unreadable: bool = False,
    ) -> None:
        self.rec_path = Path(rec_path)
        if not self.rec_path.is_file():
            raise FileNotFoundError(f"record file {self.rec_path} does not exist")
        self.idx_path = Path(idx_path) if idx_path else self.rec_path.with_suffix(".idx")
        self.offsets, lines = read_idx_lines(self.idx_path)
        self.size = self.rec_path.stat().st_size
        self.transform = transform
        self.skip_unreadable = skip_unreadable
        self.skipped: list[tuple[str, str]] = []
        self._handle: BinaryIO | None = None
        self._pid: int | None = None
        scan = scan_records(self.rec_path, self.idx_path, self.offsets, lines)
        if scan.keys[0] == 0 and 0 in scan.problems:
            raise ValueError(scan.problems[0])  # the layout hangs on key 0: never skipped
        if scan.problems and not skip_unreadable:  # the first bad record in key order
            self._bad(min(scan.problems), scan.problems[min(scan.problems)], len(scan.problems))
        if scan.keys[0] == 0 and scan.flags[0] > 0:
            self.keys, self._labels, self._identity_keys = self._header_layout(scan)
        else:
            self.keys, self._labels = self._plain_layout(scan)
            self._identity_keys = range(0)
        if not len(self.keys):
            raise ValueError(f"{self.rec_path}: no readable image record")

    def _bad(self, key: int | str, reason: str, count: int) -> None:
        if not self.skip_unreadable:
            raise ValueError(f"{reason} ({count} bad record(s) in all) {_SKIP_HINT}")
        self.skipped.append((str(key), reason))

    def _header_layout(self, scan: RecordScan) -> tuple[np.ndarray, np.ndarray, range]:
        """insightface layout: key 0 = [first identity key, end key); identity records hold
        [image start, image end); checked against the .idx before any array is sized."""
        where = f"{self.rec_path}: header record (key 0)"
        if scan.flags[0] < 2:
            raise ValueError(f"{where} has {scan.flags[0]} label(s); the insightface header "
                             "has 2: [first identity key, end key]")
        first = whole_label(scan.values[0, 0], where, limit=2**62)
        end = whole_label(scan.values[0, 1], where, limit=2**62)
        if not 1 <= first <= end:
            raise ValueError(f"{where} announces identity keys [{first}, {end}): needs "
                             f"1 <= {first} <= {end}")
        keys = scan.keys
        # keys are distinct, ascending and >= 0: 0..end-1 are all there iff keys[end-1] == end-1
        if end > len(keys) or keys[end - 1] != end - 1:
            held = int(np.searchsorted(keys, end))
            raise ValueError(f"{where} announces {first - 1} images and {end - first} "
                             f"identities (keys 0..{end - 1}), but {self.idx_path} holds only "
                             f"{held} of those keys ({self.size} bytes of .rec): corrupt header "
                             "or foreign .idx")
        labels = np.full(first - 1, -1, dtype=np.int64)  # row = key: keys 0..end-1 all present
        # (a bad record reaches here only with skip_unreadable: __init__ raised otherwise) an
        # unreadable identity record is not an image: its images are skipped below, naming it
        bad_ids = [k for k in range(first, end) if k in scan.problems]
        for class_id, key in enumerate(range(first, end)):
            if key in scan.problems:
                continue
            at = f"{self.rec_path}: identity record key {key}"
            if scan.flags[key] < 2:
                raise ValueError(f"{at} has {scan.flags[key]} label(s), needs [start, end)")
            start = whole_label(scan.values[key, 0], at, limit=first)
            stop = whole_label(scan.values[key, 1], at, limit=first)
            if not 1 <= start <= stop <= first:
                raise ValueError(f"{at} holds images [{start}, {stop}), outside the image keys "
                                 f"[1, {first})")
            span = labels[start - 1:stop - 1]
            if (span >= 0).any():
                other = int(span[span >= 0][0])
                raise ValueError(f"{at} holds images [{start}, {stop}), which overlap those of "
                                 f"identity record key {first + other}")
            span[:] = class_id
        keep = labels >= 0
        orphans = np.flatnonzero(~keep) + 1
        cause = (f" (unreadable identity record(s) {bad_ids[:3]}: {scan.problems[bad_ids[0]]})"
                 if bad_ids else "")
        for key in orphans.tolist():
            self._bad(key, f"{self.rec_path}: image key {key} is in no identity record's "
                      f"range{cause}", len(orphans))
        bad_images = [k for k in range(1, first) if k in scan.problems and keep[k - 1]]
        for key in bad_images:
            self._bad(key, scan.problems[key], len(bad_images))
        keep[np.asarray(bad_images, dtype=np.int64) - 1] = False
        image_keys = np.arange(1, first, dtype=np.int64)
        return image_keys[keep], labels[keep], range(first, end)

    def _plain_layout(self, scan: RecordScan) -> tuple[np.ndarray, np.ndarray]:
        """Every key of the .idx is an image; its label is the (first) header label."""
        labels = np.zeros(len(scan.keys), dtype=np.int64)
        problems = dict(scan.problems)
        for row, key in enumerate(scan.keys.tolist()):
            if key not in problems:
                try:
                    labels[row] = whole_label(scan.values[row, 0],
                                              f"{self.rec_path}: record key {key}")
                except ValueError as error:
                    problems[key] = str(error)
        keep = np.ones(len(scan.keys), dtype=bool)
        for row, key in enumerate(scan.keys.tolist()):
            if key in problems:
                self._bad(key, problems[key], len(problems))
                keep[row] = False
        return scan.keys[keep], labels[keep]

    def check_images(self) -> None:
        """Decode-check every image (Pillow ``verify``): a bad one is an error naming its key,
        or with ``skip_unreadable`` left out and counted in ``skipped``."""
        bad = []
        for row, key in enumerate(self.keys.tolist()):
            try:
                with Image.open(io.BytesIO(self.read(key)[1])) as image:
                    image.verify()
            except Exception as error:  # Pillow raises many types for broken data
                bad.append((row, key, f"{self.rec_path}: key {key}: cannot decode image: "
                                      f"{error}"))
        for _, key, reason in bad:
            self._bad(key, reason, len(bad))
        if bad:
            keep = np.ones(len(self.keys), dtype=bool)
            keep[[row for row, _, _ in bad]] = False
            self.keys, self._labels = self.keys[keep], self._labels[keep]
            if not len(self.keys):
                raise ValueError(f"{self.rec_path}: no readable image record")

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
        return self._labels

    @property
    def num_classes(self) -> int:
        if len(self._identity_keys):
            return len(self._identity_keys)
        return int(self._labels.max()) + 1 if len(self._labels) else 0

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        key = int(self.keys[index])
        _, data = self.read(key)
        try:
            image = decode_image(data)
        except DECODE_ERRORS as error:
            raise ValueError(f"{self.rec_path}: key {key}: cannot decode image: {error}") from error
        return (self.transform(image) if self.transform else image), int(self._labels[index])
