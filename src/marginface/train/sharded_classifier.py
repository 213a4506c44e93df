"""A head sharded by class over ranks (model parallel), with optional Partial FC sampling.

An et al., "Partial FC", ICCV 2021; docs/large-class.md. The classifier takes a head (any
``marginface.heads.Head``, a user's subclass included) and keeps this rank's contiguous block of
its per-class rows (``head.class_tensors``: the weight, Softmax's bias; the binary heads' one
bias number is replicated, and its gradient is summed over the ranks by the fused loss):
``num_local = C // W + (rank < C % W)`` rows starting at ``class_start``. Everything else of the
head (SphereFace's ``iteration``, moving state) stays whole on every rank, and every step asks
the head for its ``LogitSpec`` exactly as ``head.loss`` does: embeddings and labels are
all-gathered (autograd-aware: the backward sums the ranks' partial gradients and hands each rank
its own rows), then ``head.fused_loss`` runs the fused blockwise cross-entropy over the local
classes with a distributed logsumexp. The loss is the mean over the global batch on every rank.

Partial FC (``sample_rate < 1``, training mode only): each rank keeps every local class that is a
label of the global batch and fills up to ``ceil(sample_rate * num_local)`` classes with negatives
drawn uniformly without replacement (torch's global RNG); only those rows get a gradient. The
binary heads (a sum over classes, ``weights_sampled_classes``) weight each drawn negative class by
``pool / drawn`` (the inverse of its chance to be drawn), so the sampled loss is an unbiased
estimate of the full one; the softmax heads keep Partial FC's plain sampled softmax.

Gradient scale under DDP: each rank's embeddings receive the full gradient of the global mean loss
for its rows; the trainer sums (not averages) the backbone gradients over ranks. Checkpoints hold
the classifier whole (``full_state_dict``, gathered) and are independent of the number of ranks.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from marginface.heads.base import Head
from marginface.heads.registry import create_head
from marginface.validation import check_embeddings, check_labels

__all__ = ["ShardedClassifier", "shard_range", "all_gather_with_grad"]


def shard_range(num_classes: int, rank: int, world_size: int) -> tuple[int, int]:
    """``(class_start, num_local)`` of ``rank``: contiguous rows; the first C % W get one more."""
    base, extra = divmod(num_classes, world_size)
    return rank * base + min(rank, extra), base + (1 if rank < extra else 0)


class _AllGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, group) -> Tensor:  # type: ignore[override]
        world = dist.get_world_size(group)
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous(), group=group)
        ctx.group, ctx.rank, ctx.rows = group, dist.get_rank(group), x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        grad = grad.contiguous()
        if dist.get_backend(ctx.group) == "nccl":
            out = torch.empty(ctx.rows, *grad.shape[1:], dtype=grad.dtype, device=grad.device)
            dist.reduce_scatter_tensor(out, grad, group=ctx.group)
            return out, None
        dist.all_reduce(grad, group=ctx.group)  # gloo has no reduce-scatter: sum, then slice
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows], None


def all_gather_with_grad(x: Tensor, group: dist.ProcessGroup | None = None) -> Tensor:
    """Concatenate every rank's ``x`` (same shape on all ranks); gradients flow back per rank."""
    return _AllGather.apply(x, group or dist.group.WORLD)


def _check_rank(rank: int, world_size: int, sample_rate: float) -> None:
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an integer >= 1, got {world_size!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an integer in [0, world_size={world_size}), got {rank!r}")
    if not (isinstance(sample_rate, (int, float)) and 0.0 < sample_rate <= 1.0):
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate!r}")


class ShardedClassifier(nn.Module):
    """This rank's shard of ``head`` and the distributed loss over the global batch.

    ``head`` is a head module, or (older form) a registry name or a mapping with a ``name`` key
    and the head's keyword arguments, built with ``embedding_dim``, ``num_classes`` and
    ``head_kwargs``. Without an initialised process group (or with world_size 1) it is the
    single-process fused loss (with Partial FC sampling if asked for).
    """

    def __init__(self, head: Head | str | Mapping, embedding_dim: int | None = None,
                 num_classes: int | None = None, *, rank: int, world_size: int,
                 sample_rate: float = 1.0, process_group: dist.ProcessGroup | None = None,
                 **head_kwargs: Any) -> None:
        super().__init__()
        if not isinstance(head, Head):
            if isinstance(head, Mapping):
                head_kwargs = {**{k: v for k, v in head.items() if k != "name"}, **head_kwargs}
                head = head.get("name")
            head = create_head(head, embedding_dim, num_classes, **head_kwargs)
        elif head_kwargs or (embedding_dim, num_classes) not in (
                (None, None), (head.embedding_dim, head.num_classes)):
            raise ValueError("a head module carries its own sizes and options: pass only rank, "
                             "world_size, sample_rate and process_group with it")
        _check_rank(rank, world_size, sample_rate)
        self.embedding_dim, self.num_classes = head.embedding_dim, head.num_classes
        self.rank, self.world_size = rank, world_size
        self.class_start, self.num_local = shard_range(self.num_classes, rank, world_size)
        self.sample_rate, self.process_group = sample_rate, process_group
        self.head_rows = head.rows_per_class
        self.head = self._local_copy(head)

    def _rows(self) -> slice:
        """This rank's rows of the per-class tensors (a class's K sub-centre rows together)."""
        k = self.head_rows
        return slice(self.class_start * k, (self.class_start + self.num_local) * k)

    def _local_copy(self, head: Head) -> Head:
        """``head`` with its per-class tensors cut to this rank's rows (never copied whole)."""
        rows = self._rows()
        memo: dict[int, Any] = {}
        for name in head.class_tensors:
            full = getattr(head, name)
            part = full.detach()[rows].clone()
            memo[id(full)] = nn.Parameter(part, full.requires_grad) if isinstance(
                full, nn.Parameter) else part
        return copy.deepcopy(head, memo)

    @property
    def weight(self) -> Tensor:
        """This rank's rows of the head's weight."""
        return self.head.weight

    @property
    def bias(self) -> Tensor | None:
        """This rank's rows of the head's bias (Softmax), else None."""
        return self.head.fused_bias()

    def _group(self):
        if self.world_size == 1 or not (dist.is_available() and dist.is_initialized()):
            return None
        return self.process_group or dist.group.WORLD

    # ------------------------------------------------------------------ the loss
    def _sample(self, local: Tensor) -> tuple[Tensor | None, Tensor, Tensor | None]:
        """Partial FC: (kept local rows or None for all, labels remapped to the kept rows, and
        the kept classes' weights ``pool / drawn`` for the drawn ones, 1 for the positives)."""
        keep = min(self.num_local, math.ceil(self.sample_rate * self.num_local))
        if not self.training or keep >= self.num_local:
            return None, local, None
        owned = local >= 0
        positives = torch.unique(local[owned])
        score = torch.rand(self.num_local, device=local.device)
        score[positives] = 2.0  # every positive class is kept
        index = score.topk(max(keep, positives.numel())).indices.sort().values
        remap = torch.full((self.num_local,), -1, dtype=torch.long, device=local.device)
        remap[index] = torch.arange(index.numel(), device=local.device)
        drawn = index.numel() - positives.numel()
        weights = torch.ones(index.numel(), device=local.device)
        if drawn > 0:  # each non-positive class is drawn with probability drawn / pool
            weights[score[index] < 2.0] = (self.num_local - positives.numel()) / drawn
        return index, torch.where(owned, remap[local.clamp(0, self.num_local - 1)], -1), weights

    def _gather_batch(self, local_embeddings: Tensor, labels: Tensor, group):
        sizes = [torch.zeros(1, dtype=torch.long) for _ in range(dist.get_world_size(group))]
        dist.all_gather(sizes, torch.tensor([labels.shape[0]]), group=group)
        if len({int(s) for s in sizes}) != 1:
            raise ValueError(f"every rank needs the same local batch size, got "
                             f"{[int(s) for s in sizes]}")
        parts = [torch.empty_like(labels) for _ in sizes]
        dist.all_gather(parts, labels.contiguous(), group=group)
        return all_gather_with_grad(local_embeddings, group), torch.cat(parts)

    def loss(self, local_embeddings: Tensor, local_labels: Tensor) -> Tensor:
        """Mean loss over the global batch (the same value on every rank)."""
        check_embeddings(local_embeddings, self.embedding_dim, "local_embeddings")
        check_labels(local_labels, self.num_classes, local_embeddings.shape[0])
        if local_embeddings.shape[0] == 0:
            raise ValueError("local_embeddings has 0 rows: every rank needs a batch")
        group = self._group()
        labels = local_labels.long()
        embeddings = local_embeddings
        if group is not None:
            embeddings, labels = self._gather_batch(local_embeddings, labels, group)
        head = self.head
        if self.training:
            head.advance_schedule()
        local = labels - self.class_start
        local = torch.where((local >= 0) & (local < self.num_local), local, -1)
        index, local, class_weights = self._sample(local)
        weight, bias = head.weight, head.fused_bias()
        if index is not None:
            k = self.head_rows
            rows = index if k == 1 else (index.unsqueeze(1) * k + torch.arange(
                k, device=index.device)).flatten()
            weight = weight[rows]
            bias = None if bias is None else bias[index]
        extra_args = {}
        if class_weights is not None and head.weights_sampled_classes:
            extra_args["class_weights"] = class_weights  # the binary heads' unbiased sum
        loss = head.fused_loss(embeddings, weight, local, labels, bias=bias, process_group=group,
                               **extra_args)
        extra = head.extra_loss(local_embeddings, local_labels)
        if extra is None:
            return loss
        # The global mean with this rank's rows differentiable, the other ranks' as a constant.
        part = extra.sum()
        total = part.detach().clone()
        if group is not None:
            dist.all_reduce(total, group=group)
        return loss + (part + (total - part.detach())) / embeddings.shape[0]

    # ------------------------------------------------------------------ whole-classifier I/O
    def gather_rows(self, t: Tensor) -> Tensor:
        """The whole (num_classes, ...) tensor from every rank's rows of ``t`` (a collective)."""
        group = self._group()
        if group is None:
            return t.detach().clone()
        k = self.head_rows
        rows = (self.num_classes // self.world_size + (self.num_classes % self.world_size > 0)) * k
        padded = t.new_zeros(rows, *t.shape[1:])
        padded[: t.shape[0]] = t.detach()
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded, group=group)
        return torch.cat([p[: shard_range(self.num_classes, r, self.world_size)[1] * k]
                          for r, p in enumerate(parts)])

    def full_state_dict(self) -> dict[str, Tensor]:
        """The whole head's ``state_dict`` on CPU, per-class rows gathered (a collective).

        The same keys and shapes as the unsharded head's, whatever the number of ranks.
        """
        state = {}
        for key, value in self.head.state_dict().items():
            value = self.gather_rows(value) if key in self.head.class_tensors else value
            state[key] = value.detach().cpu().clone()
        return state

    def load_full_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Take this rank's rows of a whole head's state (saved with any number of ranks).

        Per-class tensors are required; other entries (SphereFace's ``iteration``) are loaded
        when present.
        """
        rows = self._rows()
        own = self.head.state_dict()
        with torch.no_grad():
            for key, mine in own.items():
                value = state.get(key)
                if key in self.head.class_tensors:
                    want = (self.num_classes * self.head_rows, *mine.shape[1:])
                    if not isinstance(value, Tensor) or tuple(value.shape) != want:
                        got = tuple(value.shape) if isinstance(value, Tensor) else value
                        raise ValueError(f"state[{key!r}] must have shape {want}, got {got}")
                    mine.copy_(value[rows])
                elif isinstance(value, Tensor):
                    mine.copy_(value)

    def full_optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The optimizer's state dict with every per-row tensor gathered whole (a collective)."""
        state = copy.copy(optimizer.state_dict())
        row_keys, local_rows = self._row_keys(optimizer), self.num_local * self.head_rows
        state["state"] = {
            key: {name: (self.gather_rows(value).cpu()
                         if key in row_keys and self._is_rows(value, local_rows)
                         else value) for name, value in entry.items()}
            for key, entry in state["state"].items()
        }
        return state

    def load_full_optimizer_state(self, optimizer: torch.optim.Optimizer,
                                  state: dict[str, Any]) -> None:
        """Load a whole optimizer state (``full_optimizer_state``), keeping this rank's rows."""
        rows = self._rows()
        row_keys = self._row_keys(optimizer)
        local = copy.copy(state)
        local["state"] = {
            key: {name: (value[rows].clone()
                         if key in row_keys
                         and self._is_rows(value, self.num_classes * self.head_rows)
                         else value) for name, value in entry.items()}
            for key, entry in state["state"].items()
        }
        optimizer.load_state_dict(local)

    def _row_keys(self, optimizer: torch.optim.Optimizer) -> set[int]:
        """The optimizer-state keys of the per-class tensors (not of replicated parameters such as
        the binary heads' bias, whose state stays whole whatever its shape)."""
        sharded = {id(getattr(self.head, n)) for n in self.head.class_tensors}
        params = [p for group in optimizer.param_groups for p in group["params"]]
        return {i for i, p in enumerate(params) if id(p) in sharded}

    @staticmethod
    def _is_rows(value: Any, rows: int) -> bool:
        return isinstance(value, Tensor) and value.dim() >= 1 and value.shape[0] == rows

    def clip_grad_norm(self, backbone_params: list[nn.Parameter], max_norm: float) -> float:
        """Clip by the global norm: backbone (replicated) plus all ranks' shards; returns it."""
        grads_b = [p.grad for p in backbone_params if p.grad is not None]
        sharded = {id(getattr(self.head, n)) for n in self.head.class_tensors}
        grads_h = [p.grad for p in self.parameters() if p.grad is not None and id(p) in sharded]
        # replicated head parameters (the binary heads' bias) hold the whole gradient on every
        # rank: counted once, like the backbone
        grads_r = [p.grad for p in self.parameters()
                   if p.grad is not None and id(p) not in sharded]
        square = torch.zeros((), device=self.weight.device)
        for g in grads_h:
            square = square + g.detach().float().pow(2).sum()
        group = self._group()
        if group is not None:
            dist.all_reduce(square, group=group)
        for g in grads_b + grads_r:  # identical on every rank
            square = square + g.detach().float().pow(2).sum()
        total = float(square.sqrt())
        coef = max_norm / (total + 1e-6)
        if coef < 1.0:
            for g in grads_b + grads_h + grads_r:
                g.mul_(coef)
        return total

    def extra_repr(self) -> str:
        return (f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}, "
                f"rank={self.rank}/{self.world_size}, "
                f"rows=[{self.class_start}, {self.class_start + self.num_local}), "
                f"sample_rate={self.sample_rate}")
