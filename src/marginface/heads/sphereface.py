"""SphereFace's A-Softmax head (Liu et al., "SphereFace", CVPR 2017), with its lambda annealing.

Class rows are L2-normalised, features are not. Target logit
``|x| * (lambda*cos(theta_y) + psi(m*theta_y)) / (1 + lambda)`` with
``psi(theta) = (-1)^k cos(m*theta) - 2k``, ``k = floor(m*theta/pi)``; other logits
``|x| * cos(theta_j)``. ``lambda = max(lambda_min, base * (1 + gamma*iteration)^(-power))``,
exactly as Caffe's MarginInnerProduct: the iteration counter is advanced by one *before* each
training-mode forward (or loss) with labels, and the new value sets lambda for that call.
"""

from __future__ import annotations

import torch
from torch import Tensor

from marginface import functional as MF
from marginface.heads.base import Head
from marginface.heads.fused import BatchStats, LogitSpec
from marginface.validation import check_non_negative, check_sphereface_m

__all__ = ["SphereFace"]


class SphereFace(Head):
    """A-Softmax with integer margin ``m`` in 1..4 and SphereFace's lambda schedule.

    Paper defaults: m = 4, base = 1000, gamma = 0.12, power = 1, lambda_min = 5. ``iteration``
    is a buffer (saved in ``state_dict``), initialised from the ``iteration`` argument like
    Caffe's ``margin_inner_product_param.iteration``. ``base = lambda_min = 0`` gives the
    un-annealed A-Softmax (lambda = 0).
    """

    iteration: Tensor

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        *,
        m: int = 4,
        base: float = 1000.0,
        gamma: float = 0.12,
        power: float = 1.0,
        lambda_min: float = 5.0,
        iteration: int = 0,
        detach_margin: bool = False,
        block_size: int | None = None,
        matmul_dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(
            embedding_dim, num_classes, block_size=block_size, matmul_dtype=matmul_dtype
        )
        self.m = check_sphereface_m(m)
        self.base = check_non_negative("base", base)
        self.gamma = check_non_negative("gamma", gamma)
        self.power = check_non_negative("power", power)
        self.lambda_min = check_non_negative("lambda_min", lambda_min)
        if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 0:
            raise ValueError(f"iteration must be an integer >= 0, got {iteration!r}")
        if not isinstance(detach_margin, bool):
            raise ValueError(f"detach_margin must be a bool, got {detach_margin!r}")
        self.detach_margin = detach_margin
        self.register_buffer("iteration", torch.tensor(iteration, dtype=torch.int64))

    def current_lambda(self) -> float:
        """``max(lambda_min, base*(1 + gamma*iteration)^(-power))`` at the stored iteration."""
        return MF.sphereface_lambda(
            int(self.iteration),
            base=self.base,
            gamma=self.gamma,
            power=self.power,
            lambda_min=self.lambda_min,
        )

    def advance_schedule(self) -> None:
        # Caffe: iter_ += 1 at the start of every Forward, then lambda from the new value.
        with torch.no_grad():
            self.iteration += 1

    def _logits(self, embeddings: Tensor, labels: Tensor | None) -> Tensor:
        dtype = self.compute_dtype(embeddings)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            x = embeddings.to(dtype)
            norms = x.norm(dim=1, keepdim=True)
            # |x| = 0 gives x/|x| = 0 and logits 0 (finite), not NaN.
            unit = x / norms.clamp_min(torch.finfo(dtype).tiny)
            w = torch.nn.functional.normalize(self.weight.to(dtype), dim=1)
        cos = self._linear(unit, w)
        if labels is None:
            return cos * norms
        return MF.sphereface_apply_margin(
            cos, norms, labels, m=self.m, lambda_=self.current_lambda(),
            detach_margin=self.detach_margin,
        )

    def logit_spec(self, stats: BatchStats | None = None) -> LogitSpec:
        return LogitSpec("sphereface", m=self.m, lambda_=self.current_lambda(),
                         detach_margin=self.detach_margin)

    def target_logit(self, cos: Tensor, norm: float = 1.0) -> Tensor:
        """The target logit at the current lambda as a function of ``cos(theta_y)``."""
        lam = self.current_lambda()
        psi = MF.margin_target(cos, float(self.m), detach_margin=self.detach_margin)
        return norm * MF.sphereface_target(cos.to(psi.dtype), psi, lam)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, m={self.m}, base={self.base}, gamma={self.gamma}, "
            f"power={self.power}, lambda_min={self.lambda_min}, iteration={int(self.iteration)}"
        )
