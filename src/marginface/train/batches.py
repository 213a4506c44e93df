"""The training batches: one persistent DataLoader over the epoch sampler, with per-image flips.

The sampler is positioned at the trainer's step before every epoch, so a resumed run sees the
same batches as an uninterrupted one; the flips come from ``(seed, epoch)``.
:func:`training_inputs` turns a batch of uint8 pixels into the backbone's input with
:func:`marginface.preprocessing.normalize`, the function evaluation uses, so an image gives the
same tensor bit for bit in training (before its flip) and in evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from marginface.preprocessing import Preprocessing, normalize
from marginface.train.augment import augment_draws
from marginface.train.sampling import EpochBatchSampler, IndexedDataset, flip_mask

__all__ = ["UNCONFIGURED_PREPROCESSING", "make_loader", "iterate_batches", "training_inputs"]

# images, labels, flips (N,) or None, augmentation draws (N, 7) or None
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]

# What the trainer assumes for a backbone without a stored preprocessing: insightface's
# (x / 255 - 0.5) / 0.5, i.e. mean 127.5, std 127.5 in pixel units.
UNCONFIGURED_PREPROCESSING = Preprocessing(mean=127.5, std=127.5)


def training_inputs(images: torch.Tensor, flips: torch.Tensor | None,
                    preprocessing: Preprocessing, device: torch.device | str,
                    augment: Callable[[torch.Tensor], torch.Tensor] | None = None
                    ) -> torch.Tensor:
    """The backbone's input: uint8 RGB (N, 3, H, W) augmented (``augment`` on 0..255 pixels,
    ``marginface.train.augment``), normalised on ``device``, then mirrored where ``flips`` (N,)
    is true; float images are taken as already preprocessed (and cannot be augmented)."""
    x = images.to(device, non_blocking=True)
    if augment is not None:
        if x.is_floating_point():
            raise ValueError("data.augment needs uint8 images; this dataset gives preprocessed "
                             "float tensors")
        x = augment(x.float())
    x = x.float() if x.is_floating_point() and augment is None else normalize(x, preprocessing)
    if flips is not None and bool(flips.any()):
        x = torch.where(flips.to(x.device).view(-1, 1, 1, 1), torch.flip(x, dims=[3]), x)
    return x


def make_loader(dataset: Dataset, sampler: EpochBatchSampler, num_workers: int,
                pin_memory: bool) -> DataLoader:
    """One loader per run: its workers persist across epochs."""
    return DataLoader(IndexedDataset(dataset), batch_sampler=sampler, num_workers=num_workers,
                      persistent_workers=num_workers > 0,
                      prefetch_factor=4 if num_workers > 0 else None, pin_memory=pin_memory)


def iterate_batches(loader: DataLoader, sampler: EpochBatchSampler, *, num_images: int,
                    seed: int, flip: bool, current_step: Callable[[], int],
                    total_steps: int, augment: bool = False) -> Iterator[Batch]:
    """``(images, labels, flips or None, draws or None)`` from ``current_step()`` until
    ``total_steps``; ``draws`` are the images' augmentation numbers when ``augment``."""
    while current_step() < total_steps:
        sampler.set_position(current_step())
        flips = flip_mask(seed, sampler.epoch, num_images) if flip else None
        draws = augment_draws(seed, sampler.epoch, num_images) if augment else None
        for images, labels, indices in loader:
            yield (images, labels, (flips[indices] if flips is not None else None),
                   (draws[indices] if draws is not None else None))
            if current_step() >= total_steps:
                return
