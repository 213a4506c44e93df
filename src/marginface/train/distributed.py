"""Distributed training under torchrun: process group, DDP backbone, sharded classifier.

``torchrun --nproc_per_node=N -m marginface train ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them and starts
the process group (gloo on CPU, NCCL on CUDA). The backbone is replicated with
``DistributedDataParallel``; the classifier is sharded by class across ranks
(``marginface.train.sharded_classifier.ShardedClassifier``: all-gathered embeddings and labels,
distributed softmax cross-entropy, optional Partial FC sampling). Each rank's loss is the mean over
the *global* batch and the all-gather's backward hands every rank the full gradient of its own
embeddings, so the backbone's gradients are summed over ranks (not averaged) by a DDP comm hook:
the result equals one process on the same global batch. Checkpoints gather the classifier (and its
optimizer state) whole, so a run resumes on any number of ranks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistContext",
    "init_distributed",
    "shutdown_distributed",
    "wrap_backbone",
    "all_reduce_sum",
    "any_rank",
    "shard_range",
]


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "cpu") -> DistContext:
    """Start the process group from torchrun's environment; a single process without it."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    want_cuda = device.startswith("cuda")
    if want_cuda and not torch.cuda.is_available():
        raise ValueError(f"train.device={device!r} but CUDA is not available")
    if world_size <= 1:
        return DistContext(device=torch.device(device))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    backend = "nccl" if want_cuda else "gloo"
    if want_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://", rank=rank,
                                world_size=world_size)
    return DistContext(rank, world_size, local_rank, dev, backend)


def shutdown_distributed(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _sum_hook(state, bucket):  # no annotations: DDP compares them to its own classes
    """All-reduce SUM of a gradient bucket (DDP's default divides by the world size)."""
    work = dist.all_reduce(bucket.buffer(), async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


def wrap_backbone(model: nn.Module, ctx: DistContext, *, sum_gradients: bool = True) -> nn.Module:
    """DDP around the backbone; ``sum_gradients`` because each rank's loss is the global mean."""
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
    wrapped = DDP(model, device_ids=ids)
    if sum_gradients:
        wrapped.register_comm_hook(None, _sum_hook)
    return wrapped


def all_reduce_sum(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.distributed:
        dist.all_reduce(value)
    return value


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True on every rank if ``flag`` is true on any (e.g. a non-finite loss)."""
    if not ctx.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def shard_range(num_classes: int, rank: int, world_size: int) -> tuple[int, int]:
    """Contiguous class shard ``[start, stop)`` of ``rank``: C//W + (rank < C%W) rows each."""
    base, extra = divmod(num_classes, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)
