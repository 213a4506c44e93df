"""Training samples by key, and dropping the ones an exclude list names (``data.exclude_list``).

A sample's *key* is stable across runs: ``identity/file.jpg`` (the path under the root) for image
folders and LFW, the record index for ``.rec`` files and the synthetic set. The list is a text
file of keys, one per line; blank lines and lines starting with ``#`` are ignored
(``marginface subcenter-clean`` writes such a file). A key the dataset does not have is an error
naming the file and line; the dropped samples are counted (``dataset.excluded``, reported as
``excluded_images`` in summary.json and printed when the run starts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from marginface.inputs import read_text

__all__ = ["sample_keys", "read_exclude_list", "ExcludedSamples"]


def sample_keys(dataset: Any) -> list[str]:
    """The key of every sample of a training dataset, in index order."""
    samples = getattr(dataset, "samples", None)
    if samples is not None and hasattr(dataset, "root"):  # an image folder
        root = Path(dataset.root)
        return [Path(path).relative_to(root).as_posix() for path, _ in samples]
    items = getattr(dataset, "items", None)
    inner = getattr(dataset, "dataset", None)
    if items is not None and inner is not None:  # a subset of another dataset (by source index)
        keys = sample_keys(inner)
        return [keys[source] for source, _ in items]
    if items is not None and items and isinstance(items[0][0], (str, Path)):  # LFW people
        return [Path(path).as_posix() for path, _ in items]
    return [str(i) for i in range(len(dataset))]


def read_exclude_list(path: str | Path) -> list[tuple[int, str]]:
    """``(line number, key)`` of every key listed in ``path``."""
    path = Path(path)
    entries = []
    for number, line in enumerate(read_text(path, "data.exclude_list").splitlines(), 1):
        key = line.strip()
        if key and not key.startswith("#"):
            entries.append((number, key))
    return entries


class ExcludedSamples(Dataset):
    """``dataset`` without the samples listed in ``exclude_list`` (labels and classes kept)."""

    def __init__(self, dataset: Any, exclude_list: str | Path) -> None:
        keys = sample_keys(dataset)
        index = {key: i for i, key in enumerate(keys)}
        dropped = set()
        for number, key in read_exclude_list(exclude_list):
            if key not in index:
                raise ValueError(f"data.exclude_list: {exclude_list}:{number}: {key!r} is not a "
                                 f"sample of the training data")
            dropped.add(index[key])
        self.dataset = dataset
        self.keep = [i for i in range(len(keys)) if i not in dropped]
        self.excluded = len(dropped)
        labels = getattr(dataset, "labels", None)
        if labels is None:
            labels = getattr(dataset, "targets", None)
        self.labels = None if labels is None else [int(labels[i]) for i in self.keep]
        self.classes = getattr(dataset, "classes", None)
        self.num_classes = getattr(dataset, "num_classes", None)
        self.skipped = getattr(dataset, "skipped", 0)

    def __len__(self) -> int:
        return len(self.keep)

    def __getitem__(self, index: int):
        return self.dataset[self.keep[index]]
