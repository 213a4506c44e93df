"""ElasticFace (Boutros et al., "ElasticFace: Elastic Margin Loss for Deep Face Recognition",
CVPRW 2022): the margin of each sample is drawn from a normal distribution ``N(m, sigma)`` at each
training step.

- ``ElasticArcFace``: target ``s cos(theta_y + m_i)`` (past pi psi; below ``theta + m_i = 0``
  flat), defaults s = 64, m = 0.5, sigma = 0.05;
- ``ElasticCosFace``: target ``s (cos theta_y - m_i)``, defaults s = 64, m = 0.35, sigma = 0.05
  (the paper's ElasticFace-Arc/-Cos; the authors' configs agree).

The draws come from the head's own generator, seeded by ``seed``; its state is the buffer
``rng_state``, so it is saved in ``state_dict`` and a resumed run draws what the uninterrupted
one would. One draw of the *global* batch's margins per training step (``update_state``; the
sharded classifier keeps the generator whole on every rank, so all ranks draw the same margins).
Outside training (eval-mode ``loss``) the margin is the mean ``m``. The ElasticFace+ variant
(margins sorted by the target cosine) is not implemented.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from marginface.heads.fused import BatchStats, LogitSpec, RowFunction
from marginface.heads.margin import ArcFace, CosFace
from marginface.heads.spec_logits import angle_shift_target, stateful_logits
from marginface.validation import check_non_negative

__all__ = ["ElasticArcFace", "ElasticCosFace"]


def _arc(cos: Tensor, norm: Tensor, m: Tensor) -> tuple[Tensor, Tensor, None]:
    value, grad, _ = angle_shift_target(cos, m)
    return value, grad, None


def _cos(cos: Tensor, norm: Tensor, m: Tensor) -> tuple[Tensor, Tensor, None]:
    return cos - m, torch.ones_like(cos), None


class _Elastic:
    """The margin draws shared by both variants (mixed into ArcFace / CosFace)."""

    rng_state: Tensor
    margin: float
    training: bool
    _target = staticmethod(_arc)

    def _init_draws(self, std: float, seed: int) -> None:
        self.std = check_non_negative("std", std)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        self.seed = seed
        self.register_buffer("rng_state", torch.Generator().manual_seed(seed).get_state())
        self._drawn: Tensor | None = None

    def draw_margins(self, n: int) -> Tensor:
        """``n`` margins from ``N(m, std)`` (float64); advances the generator in ``rng_state``."""
        gen = torch.Generator()
        gen.set_state(self.rng_state.cpu())
        m = torch.normal(self.margin, self.std, (n,), generator=gen, dtype=torch.float64)
        self.rng_state.copy_(gen.get_state())
        return m

    def update_state(self, stats: BatchStats) -> None:
        self._drawn = self.draw_margins(stats.labels.shape[0]).to(stats.norms.device)

    def logit_spec(self, stats: BatchStats | None = None) -> LogitSpec:
        if self.training and self._drawn is not None:
            m = self._drawn.to(stats.norms.dtype)
        else:
            m = torch.full_like(stats.norms, self.margin)
        spec = super().logit_spec(stats)  # type: ignore[misc]
        return dataclasses.replace(spec, target_fn=RowFunction(type(self)._target, (m,)))

    def _logits(self, embeddings: Tensor, labels: Tensor | None) -> Tensor:
        return stateful_logits(self, embeddings, labels)


class ElasticArcFace(_Elastic, ArcFace):
    """ElasticFace-Arc: target ``s cos(theta_y + m_i)``, ``m_i ~ N(margin, std)`` per step."""

    def __init__(self, embedding_dim: int, num_classes: int, *, scale: float = 64.0,
                 margin: float = 0.5, std: float = 0.05, seed: int = 0,
                 block_size: int | None = None,
                 matmul_dtype: torch.dtype = torch.float32) -> None:
        ArcFace.__init__(self, embedding_dim, num_classes, scale=scale, margin=margin,
                         block_size=block_size, matmul_dtype=matmul_dtype)
        self._init_draws(std, seed)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, std={self.std}, seed={self.seed}"


class ElasticCosFace(_Elastic, CosFace):
    """ElasticFace-Cos: target ``s (cos theta_y - m_i)``, ``m_i ~ N(margin, std)`` per step."""

    _target = staticmethod(_cos)

    def __init__(self, embedding_dim: int, num_classes: int, *, scale: float = 64.0,
                 margin: float = 0.35, std: float = 0.05, seed: int = 0,
                 block_size: int | None = None,
                 matmul_dtype: torch.dtype = torch.float32) -> None:
        CosFace.__init__(self, embedding_dim, num_classes, scale=scale, margin=margin,
                         block_size=block_size, matmul_dtype=matmul_dtype)
        self._init_draws(std, seed)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, std={self.std}, seed={self.seed}"
