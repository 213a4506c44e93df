"""The classifier sharded by class over ranks (model parallel), with optional Partial FC sampling.

Each rank holds a contiguous block of class rows: ``num_local = C // W + (rank < C % W)`` rows
starting at ``class_start`` (SPEC section 4; An et al., "Partial FC", ICCV 2021). Every step
all-gathers the embeddings (autograd-aware: the backward sums the ranks' partial gradients and
hands each rank its own rows) and the labels, then runs the fused blockwise cross-entropy
(``marginface.heads.fused``) over the local classes with a distributed logsumexp: all-reduce MAX of
the local logsumexps, all-reduce SUM of ``exp(lse_local - max)``, and the target logit all-reduced
from the rank that owns the class. The loss is the mean over the global batch on every rank.

Partial FC (``sample_rate < 1``, training mode only): each rank keeps every local class that is a
label of the global batch and fills up to ``ceil(sample_rate * num_local)`` classes with negatives
drawn uniformly without replacement (torch's global RNG); only those rows get a gradient.

Gradient scale under DDP: each rank's embeddings receive the full gradient of the global mean loss
for its rows; DDP then averages the backbone gradients over ranks, i.e. the backbone sees 1/W of
the global-loss gradient (as in insightface's Partial FC). Scale the loss or the LR if wanted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.distributed as dist
from torch import Tensor, nn

from marginface.functional import sphereface_lambda
from marginface.heads.fused.blocks import choose_block_size
from marginface.heads.fused.loss import LogitSpec, _FusedCrossEntropy
from marginface.heads.precision_matmul import MATMUL_DTYPES
from marginface.validation import (
    check_embeddings,
    check_labels,
    check_margins,
    check_positive,
    check_sphereface,
)

__all__ = ["ShardedClassifier", "shard_range", "all_gather_with_grad"]

HEAD_DEFAULTS: dict[str, dict] = {
    "softmax": {},
    "normface": {"scale": 16.0},
    "cosface": {"scale": 64.0, "margin": 0.35},
    "amsoftmax": {"scale": 64.0, "margin": 0.35},
    "arcface": {"scale": 64.0, "margin": 0.5},
    "combined": {"scale": 64.0, "m1": 1.0, "m2": 0.3, "m3": 0.2},
    "sphereface": {"m": 4, "base": 1000.0, "gamma": 0.12, "power": 1.0, "lambda_min": 5.0,
                   "iteration": 0},
}


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


def all_gather_with_grad(x: Tensor, group=None) -> Tensor:
    """Concatenate every rank's ``x`` (same shape on all ranks); gradients flow back per rank."""
    return _AllGather.apply(x, group or dist.group.WORLD)


class ShardedClassifier(nn.Module):
    """This rank's block of the (num_classes, embedding_dim) classifier and the distributed loss.

    ``head`` is a name (softmax, normface, cosface, amsoftmax, arcface, combined, sphereface) or a
    mapping with a ``name`` key and the head's keyword arguments; ``head_kwargs`` override them
    (scale, margin, m1, m2, m3, detach_margin; SphereFace m, base, gamma, power, lambda_min,
    iteration). Without an initialised process group (or with world_size 1) it is the
    single-process fused loss.
    """

    iteration: Tensor

    def __init__(self, head: str | Mapping, embedding_dim: int, num_classes: int, *, rank: int,
                 world_size: int, sample_rate: float = 1.0, block_size: int | None = None,
                 matmul_dtype: torch.dtype = torch.float32, process_group=None,
                 **head_kwargs) -> None:
        super().__init__()
        if isinstance(head, Mapping):
            head_kwargs = {**{k: v for k, v in head.items() if k != "name"}, **head_kwargs}
            head = head.get("name")
        if head not in HEAD_DEFAULTS:
            raise ValueError(f"head must be one of {sorted(HEAD_DEFAULTS)}, got {head!r}")
        unknown = set(head_kwargs) - set(HEAD_DEFAULTS[head]) - (
            set() if head == "softmax" else {"detach_margin"})
        if unknown:
            raise ValueError(f"unknown argument(s) for head {head!r}: {sorted(unknown)}")
        for name, value in (("embedding_dim", embedding_dim), ("num_classes", num_classes),
                            ("world_size", world_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(
                f"rank must be an integer in [0, world_size={world_size}), got {rank!r}")
        if not (isinstance(sample_rate, (int, float)) and 0.0 < sample_rate <= 1.0):
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
        if matmul_dtype not in MATMUL_DTYPES:
            raise ValueError(
                f"matmul_dtype must be one of {MATMUL_DTYPES}, got {matmul_dtype!r}")
        if block_size is not None:
            choose_block_size(1, 1, 1, block_size)  # validates
        self.head_name = head
        self.options = {**HEAD_DEFAULTS[head], **head_kwargs}
        self.embedding_dim, self.num_classes = embedding_dim, num_classes
        self.rank, self.world_size = rank, world_size
        self.class_start, self.num_local = shard_range(num_classes, rank, world_size)
        self.sample_rate, self.block_size, self.matmul_dtype = sample_rate, block_size, matmul_dtype
        self.process_group = process_group
        self._spec()  # validates the head's numbers now, not at the first step
        self.weight = nn.Parameter(torch.empty(self.num_local, embedding_dim).normal_(std=0.01))
        self.bias = nn.Parameter(torch.zeros(self.num_local)) if head == "softmax" else None
        if head == "sphereface":
            self.register_buffer("iteration", torch.tensor(int(self.options["iteration"])))

    # ------------------------------------------------------------------ head maths
    def current_lambda(self) -> float:
        o = self.options
        return sphereface_lambda(int(self.iteration), base=o["base"], gamma=o["gamma"],
                                 power=o["power"], lambda_min=o["lambda_min"])

    def _spec(self) -> LogitSpec:
        o, name = self.options, self.head_name
        detach = bool(o.get("detach_margin", False))
        if name == "softmax":
            return LogitSpec("softmax")
        if name == "sphereface":
            lam = self.current_lambda() if hasattr(self, "iteration") else 0.0
            check_sphereface(o["m"], lam)
            return LogitSpec("sphereface", m=o["m"], lambda_=lam, detach_margin=detach)
        m1, m2, m3 = o.get("m1", 1.0), o.get("m2", 0.0), o.get("m3", 0.0)
        if name in ("cosface", "amsoftmax"):
            m3 = o["margin"]
        elif name == "arcface":
            m2 = o["margin"]
        m1, m2, m3 = check_margins(m1, m2, m3)
        return LogitSpec("margin", scale=check_positive("scale", o["scale"]), m1=m1, m2=m2,
                         m3=m3, detach_margin=detach)

    def _group(self):
        if self.world_size == 1 or not (dist.is_available() and dist.is_initialized()):
            return None
        return self.process_group or dist.group.WORLD

    # ------------------------------------------------------------------ the loss
    def _sample(self, local: Tensor) -> tuple[Tensor | None, Tensor]:
        """Partial FC: (kept local rows or None for all, labels remapped to the kept rows)."""
        keep = min(self.num_local, math.ceil(self.sample_rate * self.num_local))
        if not self.training or keep >= self.num_local:
            return None, local
        owned = local >= 0
        positives = torch.unique(local[owned])
        score = torch.rand(self.num_local, device=local.device)
        score[positives] = 2.0  # every positive class is kept
        index = score.topk(max(keep, positives.numel())).indices.sort().values
        remap = torch.full((self.num_local,), -1, dtype=torch.long, device=local.device)
        remap[index] = torch.arange(index.numel(), device=local.device)
        return index, torch.where(owned, remap[local.clamp(0, self.num_local - 1)], -1)

    def loss(self, local_embeddings: Tensor, local_labels: Tensor) -> Tensor:
        """Mean margin cross-entropy over the global batch (the same value on every rank)."""
        check_embeddings(local_embeddings, self.embedding_dim, "local_embeddings")
        check_labels(local_labels, self.num_classes, local_embeddings.shape[0])
        if local_embeddings.shape[0] == 0:
            raise ValueError("local_embeddings has 0 rows: every rank needs a batch")
        group = self._group()
        labels = local_labels.long()
        if group is not None:
            sizes = [torch.zeros(1, dtype=torch.long) for _ in range(dist.get_world_size(group))]
            dist.all_gather(sizes, torch.tensor([labels.shape[0]]), group=group)
            if len({int(s) for s in sizes}) != 1:
                raise ValueError(f"every rank needs the same local batch size, got "
                                 f"{[int(s) for s in sizes]}")
            embeddings = all_gather_with_grad(local_embeddings, group)
            parts = [torch.empty_like(labels) for _ in sizes]
            dist.all_gather(parts, labels.contiguous(), group=group)
            labels = torch.cat(parts)
        else:
            embeddings = local_embeddings
        if self.training and self.head_name == "sphereface":
            with torch.no_grad():
                self.iteration += 1  # as the heads: advance, then lambda from the new value
        local = labels - self.class_start
        local = torch.where((local >= 0) & (local < self.num_local), local, -1)
        index, local = self._sample(local)
        weight, bias = self.weight, self.bias
        if index is not None:
            weight = weight[index]
            bias = None if bias is None else bias[index]
        block = choose_block_size(embeddings.shape[0], weight.shape[0], self.embedding_dim,
                                  self.block_size)
        return _FusedCrossEntropy.apply(embeddings, weight, bias, local, self._spec(), block,
                                        self.matmul_dtype, group)

    # ------------------------------------------------------------------ whole-classifier I/O
    def _gather_rows(self, t: Tensor) -> Tensor:
        group = self._group()
        if group is None:
            return t.detach().clone()
        rows = self.num_classes // self.world_size + (self.num_classes % self.world_size > 0)
        padded = t.new_zeros(rows, *t.shape[1:])
        padded[: t.shape[0]] = t.detach()
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded, group=group)
        return torch.cat([p[: shard_range(self.num_classes, r, self.world_size)[1]]
                          for r, p in enumerate(parts)])

    def full_state_dict(self) -> dict[str, Tensor]:
        """The whole classifier, gathered on every rank: ``weight`` (C, D), ``bias``, ``iteration``.

        A collective: every rank must call it.
        """
        state = {"weight": self._gather_rows(self.weight)}
        if self.bias is not None:
            state["bias"] = self._gather_rows(self.bias)
        if self.head_name == "sphereface":
            state["iteration"] = self.iteration.detach().clone()
        return state

    def load_full_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Take this rank's rows of a whole classifier (saved with any number of ranks)."""
        weight = state.get("weight")
        if not isinstance(weight, Tensor) or tuple(weight.shape) != (self.num_classes,
                                                                      self.embedding_dim):
            got = tuple(weight.shape) if isinstance(weight, Tensor) else weight
            raise ValueError(f"state['weight'] must have shape ({self.num_classes}, "
                             f"{self.embedding_dim}), got {got}")
        rows = slice(self.class_start, self.class_start + self.num_local)
        with torch.no_grad():
            self.weight.copy_(weight[rows])
            if self.bias is not None:
                if "bias" not in state or tuple(state["bias"].shape) != (self.num_classes,):
                    raise ValueError(f"state['bias'] must have shape ({self.num_classes},)")
                self.bias.copy_(state["bias"][rows])
            if self.head_name == "sphereface" and "iteration" in state:
                self.iteration.copy_(state["iteration"])

    def extra_repr(self) -> str:
        return (f"head={self.head_name}, embedding_dim={self.embedding_dim}, "
                f"num_classes={self.num_classes}, rank={self.rank}/{self.world_size}, "
                f"rows=[{self.class_start}, {self.class_start + self.num_local}), "
                f"sample_rate={self.sample_rate}")
