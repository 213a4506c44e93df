"""``data.min_images_per_identity``: leave out identities with too few images, and say so.

An identity with one image teaches a margin loss nothing (it has no second view to pull
together) and on LFW most identities have one. :func:`min_images_filter` keeps the identities
with at least ``min_images`` images, relabels them 0..K-1 in their original order and records
what it dropped (:class:`Dropped`, reported in the run log and summary.json).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import Dataset

__all__ = ["Dropped", "MinImagesSubset", "min_images_filter"]


@dataclass(frozen=True)
class Dropped:
    """Identities and images left out by ``data.min_images_per_identity``."""

    min_images: int
    identities: int
    images: int
    kept_identities: int
    kept_images: int

    def message(self) -> str:
        return (f"data.min_images_per_identity={self.min_images}: kept {self.kept_identities} "
                f"identities ({self.kept_images} images), dropped {self.identities} identities "
                f"({self.images} images)")


class MinImagesSubset(Dataset):
    """The items of ``dataset`` whose identity is kept, labels remapped to 0..K-1."""

    def __init__(self, dataset: Any, indices: np.ndarray, remap: dict[int, int],
                 classes: list[str] | None, dropped: Dropped) -> None:
        self.dataset = dataset
        self.indices = indices
        self._remap = remap
        base = np.asarray(_labels(dataset))
        self._labels = [remap[int(v)] for v in base[indices]]
        self.classes = classes if classes is not None else [str(k) for k in remap]
        self.dropped = dropped
        self.skipped = getattr(dataset, "skipped", 0)

    @property
    def num_classes(self) -> int:
        return len(self._remap)

    @property
    def labels(self) -> list[int]:
        return self._labels

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        image, label = self.dataset[int(self.indices[index])]
        return image, self._remap[int(label)]


def _labels(dataset: Any) -> Any:
    from marginface.train.builders import dataset_labels

    return dataset_labels(dataset)


def min_images_filter(dataset: Any, min_images: int) -> Any:
    """``dataset`` itself when every identity has ``min_images`` images (with ``dropped`` set),
    else a :class:`MinImagesSubset`. ValueError naming ``min_images`` and the largest count when
    no identity has that many."""
    labels = np.asarray(_labels(dataset), dtype=np.int64)
    counts = np.bincount(labels) if labels.size else np.zeros(0, dtype=np.int64)
    present = np.flatnonzero(counts)
    largest = int(counts.max()) if counts.size else 0
    if largest < min_images:
        raise ValueError(f"data.min_images_per_identity={min_images} is larger than every "
                         f"identity: the largest has {largest} image(s)")
    kept = present[counts[present] >= min_images]
    dropped = Dropped(min_images=min_images, identities=int(present.size - kept.size),
                      images=int(labels.size - counts[kept].sum()),
                      kept_identities=int(kept.size), kept_images=int(counts[kept].sum()))
    if dropped.identities == 0:
        try:
            dataset.dropped = dropped
        except AttributeError:  # a dataset with slots or a read-only property: report nothing
            pass
        return dataset
    remap = {int(old): new for new, old in enumerate(kept)}
    indices = np.flatnonzero(np.isin(labels, kept))
    names = getattr(dataset, "classes", None)
    classes = [names[int(k)] for k in kept] if names is not None and len(names) > kept.max() \
        else None
    return MinImagesSubset(dataset, indices, remap, classes, dropped)
