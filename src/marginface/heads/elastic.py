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
Outside training (eval-mode ``loss``) the margin is the mean ``m``.

ElasticFace+ (``ElasticArcFacePlus``, ``ElasticCosFacePlus``; paper Sec. 3.3): the batch's draws
are sorted and handed out by the samples' target cosines, so that a sample far from its class
centre (small ``cos theta_y``) gets a large margin and vice versa: the k-th largest target cosine
gets the k-th smallest margin (``assign_by_target_cos``; ties keep the batch order). The target
cosines are the global batch's (``BatchStats``, all-reduced in the sharded loss), so every rank
assigns alike. Defaults from the authors' configs: sigma = 0.0175 (Arc+), 0.02 (Cos+). (The
authors' code indexes the sorted margins with the sort permutation, a gather, which in general
does not give the farthest sample the largest margin; this follows the paper's text.)
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import Tensor

from marginface.heads.fused import BatchStats, LogitSpec, RowFunction
from marginface.heads.margin import ArcFace, CosFace
from marginface.heads.spec_logits import angle_shift_target, stateful_logits
from marginface.validation import check_non_negative

__all__ = ["ElasticArcFace", "ElasticCosFace", "ElasticArcFacePlus", "ElasticCosFacePlus",
           "assign_by_target_cos"]


def _arc(cos: Tensor, norm: Tensor, m: Tensor) -> tuple[Tensor, Tensor, None]:
    value, grad, _ = angle_shift_target(cos, m)
    return value, grad, None


def _cos(cos: Tensor, norm: Tensor, m: Tensor) -> tuple[Tensor, Tensor, None]:
    return cos - m, torch.ones_like(cos), None


def assign_by_target_cos(margins: Tensor, target_cos: Tensor) -> Tensor:
    """ElasticFace+: ``margins`` sorted and re-assigned, the largest to the smallest target cosine.

    The sample with the k-th largest ``target_cos`` gets the k-th smallest margin; equal cosines
    keep their batch order (a stable sort), so the assignment is reproducible.
    """
    closest_first = torch.sort(target_cos, descending=True, stable=True).indices
    out = torch.empty_like(margins)
    out[closest_first.to(margins.device)] = torch.sort(margins).values
    return out


class _Elastic:
    """The margin draws shared by both variants (mixed into ArcFace / CosFace)."""

    rng_state: Tensor
    margin: float
    training: bool
    plus: ClassVar[bool] = False  # ElasticFace+: draws assigned by the target cosines
    default_std: ClassVar[float] = 0.05  # std=None: the variant's default (the authors' configs)
    _target = staticmethod(_arc)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, std={self.std}, seed={self.seed}"

    def _init_draws(self, std: float | None, seed: int) -> None:
        self.std = check_non_negative("std", self.default_std if std is None else std)
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
        drawn = self.draw_margins(stats.labels.shape[0]).to(stats.norms.device)
        self._drawn = assign_by_target_cos(drawn, stats.target_cos) if self.plus else drawn

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
    """ElasticFace-Arc: target ``s cos(theta_y + m_i)``, ``m_i ~ N(margin, std)`` per step.

    ``std=None`` is the variant's default: 0.05 here, 0.0175 for ``ElasticArcFacePlus``.
    """

    def __init__(self, embedding_dim: int, num_classes: int, *, scale: float = 64.0,
                 margin: float = 0.5, std: float | None = None, seed: int = 0,
                 block_size: int | None = None,
                 matmul_dtype: torch.dtype = torch.float32) -> None:
        ArcFace.__init__(self, embedding_dim, num_classes, scale=scale, margin=margin,
                         block_size=block_size, matmul_dtype=matmul_dtype)
        self._init_draws(std, seed)


class ElasticCosFace(_Elastic, CosFace):
    """ElasticFace-Cos: target ``s (cos theta_y - m_i)``, ``m_i ~ N(margin, std)`` per step.

    ``std=None`` is the variant's default: 0.05 here, 0.02 for ``ElasticCosFacePlus``.
    """

    _target = staticmethod(_cos)

    def __init__(self, embedding_dim: int, num_classes: int, *, scale: float = 64.0,
                 margin: float = 0.35, std: float | None = None, seed: int = 0,
                 block_size: int | None = None,
                 matmul_dtype: torch.dtype = torch.float32) -> None:
        CosFace.__init__(self, embedding_dim, num_classes, scale=scale, margin=margin,
                         block_size=block_size, matmul_dtype=matmul_dtype)
        self._init_draws(std, seed)


class ElasticArcFacePlus(ElasticArcFace):
    """ElasticFace-Arc+: the draws of ``N(margin, std)`` sorted, the largest to the smallest
    ``cos theta_y`` (``assign_by_target_cos``); target ``s cos(theta_y + m_i)``; std 0.0175."""

    needs_target_cos = True
    plus = True
    default_std = 0.0175


class ElasticCosFacePlus(ElasticCosFace):
    """ElasticFace-Cos+: the draws of ``N(margin, std)`` sorted, the largest to the smallest
    ``cos theta_y`` (``assign_by_target_cos``); target ``s (cos theta_y - m_i)``; std 0.02."""

    needs_target_cos = True
    plus = True
    default_std = 0.02
