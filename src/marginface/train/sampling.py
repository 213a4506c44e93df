"""Resumable, rank-aware batching: the same global batches for any number of ranks.

Each epoch is a permutation of the dataset drawn from ``(seed, epoch)`` by
``torch.utils.data.DistributedSampler``; rank ``r`` of ``W`` takes every W-th index, so global
batch ``k`` (``batch_size`` images over all ranks) is always the same set of images
``perm[k*B:(k+1)*B]`` whatever ``W`` is. The position is just the global step, so a run resumes
mid-epoch, also on a different number of ranks. Horizontal flips are drawn per image from
``(seed, epoch)`` too, so augmentation does not depend on the rank layout or on worker processes.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

__all__ = ["IndexedDataset", "EpochBatchSampler", "flip_mask"]


class IndexedDataset(Dataset):
    """Wraps a dataset of ``(image, label)`` so items also carry their index."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        image, label = self.dataset[index]
        return image, label, index


def flip_mask(seed: int, epoch: int, length: int) -> torch.Tensor:
    """Bool (length,): whether image i is flipped in ``epoch``."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 7919 + 17)
    return torch.randint(0, 2, (length,), generator=generator).bool()


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of this rank's share (``batch_size // world_size``) of each global batch.

    Incomplete global batches at the end of an epoch are dropped (every step sees a full batch).
    ``set_position(step)`` makes the next iteration start at global step ``step``.
    """

    def __init__(self, length: int, batch_size: int, *, seed: int = 0, rank: int = 0,
                 world_size: int = 1, shuffle: bool = True) -> None:
        if length < 1:
            raise ValueError("the training dataset is empty (0 images)")
        if batch_size % world_size:
            raise ValueError(
                f"train.batch_size={batch_size} must be divisible by the number of ranks "
                f"({world_size})"
            )
        if length < batch_size:
            raise ValueError(
                f"train.batch_size={batch_size} is larger than the dataset ({length} images)"
            )
        self.length, self.batch_size = length, batch_size
        self.local_batch = batch_size // world_size
        self.seed, self.rank, self.world_size, self.shuffle = seed, rank, world_size, shuffle
        self.steps_per_epoch = length // batch_size
        self.step = 0

    def set_position(self, step: int) -> None:
        self.step = step

    @property
    def epoch(self) -> int:
        return self.step // self.steps_per_epoch

    def __len__(self) -> int:
        return self.steps_per_epoch - self.step % self.steps_per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        epoch, offset = divmod(self.step, self.steps_per_epoch)
        sampler = DistributedSampler(range(self.length), num_replicas=self.world_size,
                                     rank=self.rank, shuffle=self.shuffle, seed=self.seed,
                                     drop_last=False)
        sampler.set_epoch(epoch)
        indices = list(sampler)
        for k in range(offset, self.steps_per_epoch):
            yield indices[k * self.local_batch:(k + 1) * self.local_batch]
