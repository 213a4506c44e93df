"""The margin-softmax maths as functions, for people who own their weights.

One family (docs/heads.md; Deng et al., "ArcFace", CVPR 2019, eq. 4): the target logit is
``s * (psi(m1 * theta_y + m2) - m3)`` and every other logit ``s * cos(theta_j)``, where
``cos(theta_j) = <x/|x|, W_j/|W_j|>``. NormFace is (1, 0, 0), CosFace / AM-Softmax (1, 0, m),
ArcFace (1, m, 0), SphereFace-style multiplicative margins m1 > 0.

The extension past pi. ``cos(m1*theta + m2)`` stops decreasing once ``m1*theta + m2`` passes pi.
Every head here uses SphereFace's (Liu et al., CVPR 2017) monotone extension, for any real
``phi = m1*theta + m2``::

    psi(phi) = (-1)^k cos(phi) - 2k,    k = floor(phi / pi)

which equals ``cos(phi)`` on [0, pi], is continuous and strictly decreasing for all phi >= 0, and is
exactly SphereFace's psi for integer m1 and m2 = 0.

Gradients. ``d target / d cos = (-1)^k * m1 * sin(phi) / sin(theta)``, the true derivative. It is
unbounded as theta -> 0 or pi when the margin is not NormFace/CosFace; there it is evaluated at the
nearest angle the dtype resolves, ``theta`` clamped to ``[delta, pi - delta]`` with
``delta = sqrt(eps(dtype))`` (float32: 3.5e-4 rad), so values stay exact and gradients finite.
The margin maths always runs in at least float32, also under bfloat16/float16 autocast.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from marginface.validation import (
    check_embeddings,
    check_labels,
    check_margins,
    check_positive,
    check_sphereface,
)

__all__ = [
    "psi",
    "margin_target_and_grad",
    "margin_target",
    "cosine_similarity_matrix",
    "apply_margin",
    "margin_logits",
    "normface_logits",
    "cosface_logits",
    "arcface_logits",
    "combined_margin_logits",
    "sphereface_lambda",
    "sphereface_target",
    "sphereface_apply_margin",
    "sphereface_logits",
]


def _compute_dtype(t: Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def psi(phi: Tensor) -> Tensor:
    """SphereFace's monotone extension of cos: ``(-1)^k cos(phi) - 2k``, ``k = floor(phi/pi)``."""
    k = torch.floor(phi / math.pi)
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
    return sign * torch.cos(phi) - 2.0 * k


def _is_additive(m1: float | Tensor, m2: float | Tensor) -> bool:
    # Per-sample margins (tensors) always take the general path.
    if isinstance(m1, Tensor) or isinstance(m2, Tensor):
        return False
    return m1 == 1.0 and m2 == 0.0


def margin_target_and_grad(
    cos: Tensor,
    m1: float | Tensor = 1.0,
    m2: float | Tensor = 0.0,
    m3: float | Tensor = 0.0,
) -> tuple[Tensor, Tensor]:
    """Target logit ``psi(m1*acos(cos) + m2) - m3`` (unscaled) and its derivative in ``cos``.

    Pure tensor maths with no autograd, shared by the autograd function and the fused loss.
    Computed in float32 (float64 for float64 input). The margins may be tensors broadcasting
    against ``cos`` (per-sample margins, e.g. shape (B,) for the B target cosines).
    """
    c = cos.to(_compute_dtype(cos))
    if _is_additive(m1, m2):
        return c - m3, torch.ones_like(c)
    c = c.clamp(-1.0, 1.0)  # rounding of normalised dot products can leave |cos| a hair above 1
    theta = torch.acos(c)
    value = psi(m1 * theta + m2) - m3
    delta = math.sqrt(torch.finfo(c.dtype).eps)
    theta_safe = theta.clamp(delta, math.pi - delta)
    phi_safe = m1 * theta_safe + m2
    k = torch.floor(phi_safe / math.pi)
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
    grad = sign * m1 * torch.sin(phi_safe) / torch.sin(theta_safe)
    return value, grad


class _MarginTarget(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cos: Tensor, m1: float, m2: float, m3: float) -> Tensor:  # type: ignore[override]
        value, grad = margin_target_and_grad(cos, m1, m2, m3)
        ctx.save_for_backward(grad)
        ctx.input_dtype = cos.dtype
        return value

    @staticmethod
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return (grad_output * grad).to(ctx.input_dtype), None, None, None


def margin_target(
    cos: Tensor,
    m1: float = 1.0,
    m2: float = 0.0,
    m3: float = 0.0,
    *,
    detach_margin: bool = False,
) -> Tensor:
    """Unscaled target logit ``psi(m1*theta + m2) - m3`` with ``theta = acos(cos)``.

    ``detach_margin=True`` keeps the value but passes the gradient straight through as if the
    logit were ``cos`` itself, as insightface's PyTorch ArcFace does (margin under no_grad).
    """
    m1, m2, m3 = check_margins(m1, m2, m3)
    if detach_margin:
        c = cos.to(_compute_dtype(cos))
        value, _ = margin_target_and_grad(c.detach(), m1, m2, m3)
        return c + (value - c.detach())
    if _is_additive(m1, m2):
        return cos.to(_compute_dtype(cos)) - m3
    return _MarginTarget.apply(cos, m1, m2, m3)


def cosine_similarity_matrix(embeddings: Tensor, weight: Tensor) -> Tensor:
    """``cos(theta)``, (batch, num_classes): embeddings and class rows L2-normalised."""
    return F.linear(F.normalize(embeddings, dim=1), F.normalize(weight, dim=1))


def apply_margin(
    cos: Tensor,
    labels: Tensor,
    *,
    scale: float,
    m1: float = 1.0,
    m2: float = 0.0,
    m3: float = 0.0,
    detach_margin: bool = False,
) -> Tensor:
    """Scaled logits from a cosine matrix: margin on each target entry, ``s*cos`` elsewhere."""
    check_positive("scale", scale)
    check_labels(labels, cos.shape[1], cos.shape[0])
    cos = cos.to(_compute_dtype(cos))
    index = labels.long().unsqueeze(1)
    target = margin_target(cos.gather(1, index), m1, m2, m3, detach_margin=detach_margin)
    return cos.scatter(1, index, target) * scale


def margin_logits(
    embeddings: Tensor,
    weight: Tensor,
    labels: Tensor | None,
    *,
    scale: float,
    m1: float = 1.0,
    m2: float = 0.0,
    m3: float = 0.0,
    detach_margin: bool = False,
) -> Tensor:
    """Combined-margin logits ``s*(psi(m1*theta_y + m2) - m3)`` / ``s*cos(theta_j)``.

    ``weight`` is (num_classes, embedding_dim). With ``labels=None`` the plain scaled cosines.
    """
    if weight.dim() != 2:
        raise ValueError(f"weight must be (num_classes, embedding_dim), got {tuple(weight.shape)}")
    check_embeddings(embeddings, weight.shape[1])
    cos = cosine_similarity_matrix(embeddings, weight)
    if labels is None:
        return cos.to(_compute_dtype(cos)) * check_positive("scale", scale)
    return apply_margin(
        cos, labels, scale=scale, m1=m1, m2=m2, m3=m3, detach_margin=detach_margin
    )


def normface_logits(embeddings: Tensor, weight: Tensor, labels: Tensor | None = None, *,
                    scale: float = 16.0) -> Tensor:
    """NormFace (Wang et al., 2017): ``s*cos(theta_j)`` for every class."""
    return margin_logits(embeddings, weight, labels, scale=scale)


def cosface_logits(embeddings: Tensor, weight: Tensor, labels: Tensor | None, *,
                   scale: float = 64.0, margin: float = 0.35) -> Tensor:
    """CosFace / AM-Softmax (Wang et al., 2018): target ``s*(cos(theta_y) - m)``."""
    return margin_logits(embeddings, weight, labels, scale=scale, m3=margin)


def arcface_logits(embeddings: Tensor, weight: Tensor, labels: Tensor | None, *,
                   scale: float = 64.0, margin: float = 0.5,
                   detach_margin: bool = False) -> Tensor:
    """ArcFace (Deng et al., 2019): target ``s*cos(theta_y + m)``, m in radians."""
    return margin_logits(embeddings, weight, labels, scale=scale, m2=margin,
                         detach_margin=detach_margin)


def combined_margin_logits(embeddings: Tensor, weight: Tensor, labels: Tensor | None, *,
                           scale: float = 64.0, m1: float = 1.0, m2: float = 0.3,
                           m3: float = 0.2, detach_margin: bool = False) -> Tensor:
    """Combined margin (ArcFace paper, eq. 4): target ``s*(cos(m1*theta_y + m2) - m3)``."""
    return margin_logits(embeddings, weight, labels, scale=scale, m1=m1, m2=m2, m3=m3,
                         detach_margin=detach_margin)


def sphereface_lambda(iteration: int, *, base: float = 1000.0, gamma: float = 0.12,
                      power: float = 1.0, lambda_min: float = 5.0) -> float:
    """SphereFace's annealing weight ``max(base * (1 + gamma*iteration)^(-power), lambda_min)``."""
    return max(base * (1.0 + gamma * iteration) ** (-power), lambda_min)


def sphereface_target(cos: Tensor, psi_value: Tensor, lambda_: float) -> Tensor:
    """SphereFace's annealed target ``(lambda*cos + psi) / (1 + lambda)`` (Liu et al., 2017).

    ``psi_value`` is ``psi(m*theta)`` (or anything on the same scale: the Caffe layer passes
    ``|x| psi``). Linear in both inputs, so it also maps the derivatives:
    ``sphereface_target(1, dpsi/dcos, lambda)`` is ``d target / d cos``.
    """
    return (lambda_ * cos + psi_value) / (1.0 + lambda_)


def sphereface_apply_margin(cos: Tensor, norms: Tensor, labels: Tensor, *, m: int = 4,
                            lambda_: float = 0.0, detach_margin: bool = False) -> Tensor:
    """A-Softmax logits from a cosine matrix and the feature norms ``|x|`` of shape (batch, 1).

    Target ``|x| * (lambda*cos(theta_y) + psi(m*theta_y)) / (1 + lambda)``, others
    ``|x| * cos(theta_j)``; computed in float32 (float64 for float64 input).
    """
    check_sphereface(m, lambda_)
    check_labels(labels, cos.shape[1], cos.shape[0])
    # Under autocast the cosine matrix may arrive in bf16/fp16: promote before gather/scatter.
    dtype = torch.promote_types(_compute_dtype(cos), _compute_dtype(norms))
    cos = cos.to(dtype)
    index = labels.long().unsqueeze(1)
    cos_y = cos.gather(1, index)
    psi_y = margin_target(cos_y, float(m), detach_margin=detach_margin)
    target = sphereface_target(cos_y, psi_y, lambda_)
    return cos.scatter(1, index, target) * norms.to(dtype)


def sphereface_logits(embeddings: Tensor, weight: Tensor, labels: Tensor | None, *,
                      m: int = 4, lambda_: float = 0.0, detach_margin: bool = False) -> Tensor:
    """A-Softmax (Liu et al., 2017): features not normalised, class rows normalised.

    Target ``|x| * (lambda*cos(theta_y) + psi(m*theta_y)) / (1 + lambda)``, others
    ``|x| * cos(theta_j)``.
    """
    check_sphereface(m, lambda_)
    if weight.dim() != 2:
        raise ValueError(f"weight must be (num_classes, embedding_dim), got {tuple(weight.shape)}")
    check_embeddings(embeddings, weight.shape[1])
    dtype = _compute_dtype(embeddings)
    x = embeddings.to(dtype)
    norm = x.norm(dim=1, keepdim=True)
    cos = F.linear(x / norm.clamp_min(torch.finfo(dtype).tiny),
                   F.normalize(weight.to(dtype), dim=1))
    if labels is None:
        return cos.to(dtype) * norm
    return sphereface_apply_margin(cos, norm, labels, m=m, lambda_=lambda_,
                                   detach_margin=detach_margin)
