"""The training batches: one persistent DataLoader over the epoch sampler, with per-image flips.

The sampler is positioned at the trainer's step before every epoch, so a resumed run sees the
same batches as an uninterrupted one; the flips come from ``(seed, epoch)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from marginface.train.sampling import EpochBatchSampler, IndexedDataset, flip_mask

__all__ = ["make_loader", "iterate_batches"]

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]


def make_loader(dataset: Dataset, sampler: EpochBatchSampler, num_workers: int,
                pin_memory: bool) -> DataLoader:
    """One loader per run: its workers persist across epochs."""
    return DataLoader(IndexedDataset(dataset), batch_sampler=sampler, num_workers=num_workers,
                      persistent_workers=num_workers > 0,
                      prefetch_factor=4 if num_workers > 0 else None, pin_memory=pin_memory)


def iterate_batches(loader: DataLoader, sampler: EpochBatchSampler, *, num_images: int,
                    seed: int, flip: bool, current_step: Callable[[], int],
                    total_steps: int) -> Iterator[Batch]:
    """``(images, labels, flips or None)`` from ``current_step()`` until ``total_steps``."""
    while current_step() < total_steps:
        sampler.set_position(current_step())
        flips = flip_mask(seed, sampler.epoch, num_images) if flip else None
        for images, labels, indices in loader:
            yield images, labels, (flips[indices] if flips is not None else None)
            if current_step() >= total_steps:
                return
