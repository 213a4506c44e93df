"""``marginface pack``: an image folder -> insightface ``.rec`` + ``.idx`` + ``property``.

The three files are written as one set (:func:`marginface.atomic.atomic_paths`): all of them to
temporary files first, then renamed together, so a failure on any image leaves the old set (or
none) as it was, never a new ``.rec`` beside a stale ``.idx``. Every record's header carries its
``.idx`` key as ``id`` (as MXNet's im2rec writes it), which the reader checks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from marginface.atomic import atomic_paths
from marginface.data.imagefolder import ImageFolderDataset
from marginface.data.recordio import RecordHeader, pack_payload, write_record
from marginface.data.transforms import decode_image

__all__ = ["PackReport", "pack_folder"]


class PackReport(dict):
    """Counts of a ``pack_folder`` run: images, classes, skipped (with reasons), paths."""


def pack_folder(
    folder: str | Path, rec_path: str | Path, *, skip_undecodable: bool = False
) -> PackReport:
    """Write an image folder as insightface ``.rec`` + ``.idx`` + ``property``, atomically.

    Encoded files are stored byte for byte (JPEG stays JPEG); every image is decoded once to
    check it and its size. All images must share one size (that of an aligned set).
    """
    dataset = ImageFolderDataset(folder, skip_undecodable=skip_undecodable)
    rec_path = Path(rec_path)
    idx_path = rec_path.with_suffix(".idx")
    property_path = rec_path.parent / "property"
    num_images, num_classes = len(dataset), dataset.num_classes
    first_identity = num_images + 1
    size: tuple[int, int] | None = None
    ranges = np.zeros((num_classes, 2), dtype=np.int64)
    index_lines = []
    # the .idx goes last: it is what makes the .rec readable (atomic_paths)
    with atomic_paths(rec_path, property_path, idx_path) as (rec_tmp, property_tmp, idx_tmp):
        with rec_tmp.open("wb") as stream:
            header = RecordHeader(2, np.array([first_identity, first_identity + num_classes],
                                              "f4"))
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
                payload = pack_payload(RecordHeader(0, float(label), key), path.read_bytes())
                index_lines.append(f"{key}\t{write_record(stream, payload)}")
                if position == 0 or dataset.samples[position - 1][1] != label:
                    ranges[label, 0] = key
                ranges[label, 1] = key + 1
            for class_id in range(num_classes):
                key = first_identity + class_id
                header = RecordHeader(2, ranges[class_id].astype("f4"), key)
                index_lines.append(f"{key}\t{write_record(stream, pack_payload(header))}")
        assert size is not None
        idx_tmp.write_text("\n".join(index_lines) + "\n")
        property_tmp.write_text(f"{num_classes},{size[1]},{size[0]}\n")
    return PackReport(
        images=num_images,
        classes=num_classes,
        skipped=[(str(p), reason) for p, reason in dataset.skipped],
        rec=str(rec_path),
        idx=str(idx_path),
        property=str(property_path),
        size_hw=[size[1], size[0]],
    )
