"""The cosine-margin heads: one family, ``s * (psi(m1*theta_y + m2) - m3)`` / ``s * cos(theta_j)``.

Deng et al., "ArcFace", CVPR 2019, eq. 4. NormFace is (1, 0, 0), CosFace / AM-Softmax (1, 0, m),
ArcFace (1, m, 0), the combined margin (m1, m2, m3) with any real m1 > 0. ``psi`` is SphereFace's
monotone extension of cos past pi (see ``marginface.functional``), so the target logit is
continuous and non-increasing in theta on [0, pi] for every allowed parameter set.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from marginface import functional as MF
from marginface.heads.base import Head
from marginface.heads.fused import BatchStats, LogitSpec
from marginface.validation import Interval, check_margins, check_positive

__all__ = ["MarginHead", "NormFace", "CosFace", "AMSoftmax", "ArcFace", "CombinedMargin"]


# The single-margin heads' valid margins, checked by their constructors and by config validation
# (marginface.train.config asks the head). Past these bounds the target logit of the true class
# is <= 0 at every angle: it can never beat a class orthogonal to the embedding (cos = 0), where
# almost all other classes lie in high dimension, so the loss cannot be met.
COSFACE_MARGIN = Interval(0.0, 1.0, "[0, 1)", "a cosine margin", high_open=True,
                          why="at margin >= 1, cos(theta_y) - margin <= 0 at every angle")
ARCFACE_MARGIN = Interval(0.0, math.pi / 2, "[0, pi/2)", "an angle in radians", high_open=True,
                          why="at margin >= pi/2, cos(theta_y + margin) <= 0 at every angle")


def _check_single_margin(margin: float, valid: Interval) -> float:
    """CosFace/ArcFace take one ``margin`` (m3 / m2 of the family); errors name ``margin``."""
    return valid.check("margin", margin)


class MarginHead(Head):
    """Combined-margin head: target ``s*(psi(m1*theta_y + m2) - m3)``, others ``s*cos(theta_j)``.

    Class rows and embeddings are L2-normalised. Margins in radians. ``detach_margin=True`` keeps
    the margin's value but passes the gradient straight through as if the target were
    ``s*cos(theta_y)`` (insightface's PyTorch ArcFace); by default the gradient is the exact
    derivative.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        *,
        scale: float,
        m1: float = 1.0,
        m2: float = 0.0,
        m3: float = 0.0,
        detach_margin: bool = False,
        block_size: int | None = None,
        matmul_dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(
            embedding_dim, num_classes, block_size=block_size, matmul_dtype=matmul_dtype
        )
        self.scale = check_positive("scale", scale)
        self.m1, self.m2, self.m3 = check_margins(m1, m2, m3)
        if not isinstance(detach_margin, bool):
            raise ValueError(f"detach_margin must be a bool, got {detach_margin!r}")
        self.detach_margin = detach_margin

    def _logits(self, embeddings: Tensor, labels: Tensor | None) -> Tensor:
        cos = self.cosine(embeddings)
        if labels is None:
            return cos * self.scale
        return MF.apply_margin(
            cos,
            labels,
            scale=self.scale,
            m1=self.m1,
            m2=self.m2,
            m3=self.m3,
            detach_margin=self.detach_margin,
        )

    def logit_spec(self, stats: BatchStats | None = None) -> LogitSpec:
        return LogitSpec("margin", scale=self.scale, m1=self.m1, m2=self.m2, m3=self.m3,
                         detach_margin=self.detach_margin)

    def target_logit(self, cos: Tensor) -> Tensor:
        """The scaled target logit as a function of ``cos(theta_y)`` (for plots and checks)."""
        return self.scale * MF.margin_target(
            cos, self.m1, self.m2, self.m3, detach_margin=self.detach_margin
        )

    def extra_repr(self) -> str:
        text = (
            f"{super().extra_repr()}, scale={self.scale}, m1={self.m1}, m2={self.m2}, m3={self.m3}"
        )
        return text + (", detach_margin=True" if self.detach_margin else "")


class CombinedMargin(MarginHead):
    """Combined margin (ArcFace paper, eq. 4), default (m1, m2, m3) = (1, 0.3, 0.2), s = 64.

    m1 may be any real > 0 (SphereFace-style multiplicative margin, e.g. 1.35 or 1.5).
    """

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        *,
        scale: float = 64.0,
        m1: float = 1.0,
        m2: float = 0.3,
        m3: float = 0.2,
        detach_margin: bool = False,
        block_size: int | None = None,
        matmul_dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(
            embedding_dim, num_classes, scale=scale, m1=m1, m2=m2, m3=m3,
            detach_margin=detach_margin, block_size=block_size, matmul_dtype=matmul_dtype,
        )


class NormFace(MarginHead):
    """NormFace (Wang et al., ACM MM 2017): ``s*cos(theta_j)`` for every class, no margin.

    Default s = 16: the paper's bound on the normalised softmax loss,
    ``log(1 + (n-1) exp(-n s/(n-1)))``, is then below 0.01 up to ~10^5 classes.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        *,
        scale: float = 16.0,
        detach_margin: bool = False,
        block_size: int | None = None,
        matmul_dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(
            embedding_dim, num_classes, scale=scale, detach_margin=detach_margin,
            block_size=block_size, matmul_dtype=matmul_dtype,
        )


class CosFace(MarginHead):
    """CosFace / AM-Softmax (Wang et al., CVPR 2018 / SPL 2018): target ``s*(cos(theta_y) - m)``.

    Defaults are CosFace's (s = 64, m = 0.35); the AM-Softmax paper used s = 30, m = 0.35.
    The gradient is exact and equals the straight-through one (the margin is a constant shift).
    """

    margin_range: ClassVar[Interval] = COSFACE_MARGIN

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        *,
        scale: float = 64.0,
        margin: float = 0.35,
        detach_margin: bool = False,
        block_size: int | None = None,
        matmul_dtype: torch.dtype = torch.float32,
    ) -> None:
        _check_single_margin(margin, self.margin_range)
        super().__init__(
            embedding_dim, num_classes, scale=scale, m3=margin, detach_margin=detach_margin,
            block_size=block_size, matmul_dtype=matmul_dtype,
        )

    @property
    def margin(self) -> float:
        return self.m3


AMSoftmax = CosFace


class ArcFace(MarginHead):
    """ArcFace (Deng et al., CVPR 2019): target ``s*cos(theta_y + m)``, m in radians.

    Defaults s = 64, m = 0.5. Past ``theta_y + m = pi`` the target follows psi (continuous,
    decreasing), not the Caffe/MXNet fallback ``cos(theta) - m*sin(m)``.
    """

    margin_range: ClassVar[Interval] = ARCFACE_MARGIN

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        *,
        scale: float = 64.0,
        margin: float = 0.5,
        detach_margin: bool = False,
        block_size: int | None = None,
        matmul_dtype: torch.dtype = torch.float32,
    ) -> None:
        _check_single_margin(margin, self.margin_range)
        super().__init__(
            embedding_dim, num_classes, scale=scale, m2=margin, detach_margin=detach_margin,
            block_size=block_size, matmul_dtype=matmul_dtype,
        )

    @property
    def margin(self) -> float:
        return self.m2
