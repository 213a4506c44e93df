"""Full (batch, classes) logits from a ``LogitSpec``: the unfused path of the modern heads.

The heads whose logits depend on moving state or per-sample parameters (CurricularFace, AdaFace,
MagFace, ElasticFace) describe their logits once, as a ``LogitSpec``; ``forward`` and
``unfused_loss`` compute them from that spec here (``spec_logits``), the fused and sharded losses
from the same spec blockwise. ``RowFunction``s return their derivatives, so the autograd functions
below pass them on: ``dt/dcos`` and ``dt/d|x|`` for the target, ``dn/dcos`` for the negatives.

``stateful_logits`` is the whole step of such a head's ``_logits``: cosines, the batch statistics,
``update_state`` in training mode (once per call, like the fused loss), then the spec's logits.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from marginface.heads.fused import BatchStats, LogitSpec

__all__ = ["spec_logits", "stateful_logits", "angle_shift_target"]


class _Target(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cos, norm, spec, rows):  # type: ignore[override]
        value, grad, radial = spec.target_terms(cos.detach(), norm.detach(), rows)
        ctx.save_for_backward(grad, radial if radial is not None else torch.zeros_like(grad))
        return value.to(cos.dtype)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        grad, radial = ctx.saved_tensors
        return grad_out * grad, grad_out * radial, None, None


class _Negatives(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cos, fn, params):  # type: ignore[override]
        value, grad = fn(cos.detach(), *params)
        ctx.save_for_backward(grad)
        return value.to(cos.dtype)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad_out * grad, None, None


def spec_logits(cos: Tensor, norms: Tensor, labels: Tensor, spec: LogitSpec) -> Tensor:
    """``s * n(cos_ij)``, target ``s * t(cos_iy, |x_i|)`` ("margin" kind), autograd-aware.

    ``norms`` are the live feature norms (their gradient is ``dt/d|x|``).
    """
    if spec.kind != "margin":
        raise ValueError(f"spec_logits computes kind 'margin', got {spec.kind!r}")
    rows = torch.arange(cos.shape[0], device=cos.device)
    target = _Target.apply(cos.gather(1, labels[:, None]).squeeze(1), norms, spec, rows)
    others = cos
    if spec.negatives is not None:
        params = tuple(p.detach().to(cos.dtype).unsqueeze(1) for p in spec.negatives.params)
        others = _Negatives.apply(cos, spec.negatives.fn, params)
    return spec.scale * others.scatter(1, labels[:, None], target[:, None])


def stateful_logits(head, embeddings: Tensor, labels: Tensor | None) -> Tensor:
    """A spec-described margin head's ``_logits``: plain ``s cos`` without labels, else the spec's.

    With labels in training mode ``head.update_state`` runs first (once per call), as in the
    fused loss, so ``forward``/``unfused_loss`` and ``loss`` move the state alike.
    """
    cos = head.cosine(embeddings)
    if labels is None:
        return head.scale * cos
    norms = embeddings.to(cos.dtype).norm(dim=1)
    target_cos = cos.detach().gather(1, labels[:, None]).squeeze(1)
    stats = BatchStats(labels=labels.detach(), norms=norms.detach(),
                       target_cos=target_cos if head.needs_target_cos else None)
    if head.training:
        head.update_state(stats)
    return spec_logits(cos, norms, labels.long(), head.logit_spec(stats))


def angle_shift_target(cos: Tensor, shift: Tensor,
                       offset: Tensor | float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """``t = psi(max(theta + shift, 0)) - offset``, ``dt/dcos`` and ``dt/dshift``.

    The per-sample angular margins of AdaFace (``shift = -m z``, may be negative), MagFace and
    ElasticFace-Arc (``shift = m_i``). Below ``theta + shift = 0`` the target is flat at
    ``1 - offset`` (AdaFace's authors clip the angle at 0 too); past pi it follows SphereFace's
    ``psi`` like every head here (docs/heads.md, "The extension past pi"). The derivative is
    evaluated at theta clamped to ``[delta, pi - delta]`` (``delta = sqrt(eps)``), as in
    ``functional.margin_target_and_grad``, so it stays finite at cos = +-1.
    """
    c = cos.clamp(-1.0, 1.0)
    theta = torch.acos(c)
    phi = theta + shift
    k = torch.floor(phi.clamp_min(0.0) / math.pi)
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
    value = sign * torch.cos(phi.clamp_min(0.0)) - 2.0 * k - offset
    delta = math.sqrt(torch.finfo(c.dtype).eps)
    theta_safe = theta.clamp(delta, math.pi - delta)
    phi_safe = theta_safe + shift
    k_safe = torch.floor(phi_safe.clamp_min(0.0) / math.pi)
    sign_safe = 1.0 - 2.0 * torch.remainder(k_safe, 2.0)
    dpsi = torch.where(phi > 0, -sign_safe * torch.sin(phi_safe), torch.zeros_like(phi))
    return value, -dpsi / torch.sin(theta_safe), dpsi
