"""Caffe ``Normalize`` (NormFace, Wang et al. 2017; happynear's caffe): per-position L2 norm.

For every sample and spatial position, ``norm = sqrt(sum_c x_c^2 + 1e-6)`` and ``y = x / norm``.
Caffe's backward ``dx = (dy - y <y, dy>) / norm`` is exactly the derivative of this forward, so
autograd reproduces it. ``fix_gradient`` and ``bp_norm`` (NormalizeParameter) only change Caffe's
backward (a rescaled gradient, and whether the optional second top, the norm, back-propagates);
they are accepted and recorded, and the gradient here stays the true derivative. With
``num_tops=2`` the norm, shape (N, 1, ...), is returned as a second output.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from marginface.caffe.margin_layers._common import check_tops

__all__ = ["Normalize", "NORMALIZE_EPS"]

#: The constant Caffe adds to the sum of squares before the square root.
NORMALIZE_EPS = 1e-6


class Normalize(nn.Module):
    """L2-normalise over the channel axis (axis 1), ``y = x / sqrt(sum x^2 + 1e-6)``.

    Only ``normalize_type: "L2"`` is implemented; the phase does not matter.
    """

    def __init__(self, normalize_type: str = "L2", *, fix_gradient: bool = False,
                 bp_norm: bool = False, num_tops: int = 1) -> None:
        super().__init__()
        if normalize_type != "L2":
            raise ValueError(f"Normalize: normalize_type must be 'L2', got {normalize_type!r}")
        self.normalize_type = str(normalize_type)
        self.fix_gradient = bool(fix_gradient)
        self.bp_norm = bool(bp_norm)
        self.num_tops = check_tops("Normalize", num_tops, (1, 2))

    def forward(self, bottom: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        if not isinstance(bottom, Tensor) or not bottom.is_floating_point() or bottom.dim() < 2:
            raise ValueError("Normalize: bottom must be a floating tensor of shape (N, C, ...), "
                             f"got {getattr(bottom, 'shape', type(bottom).__name__)}")
        norm = torch.sqrt((bottom * bottom).sum(dim=1, keepdim=True) + NORMALIZE_EPS)
        if self.num_tops == 2:
            return bottom / norm, norm
        return bottom / norm

    def extra_repr(self) -> str:
        return f"normalize_type={self.normalize_type!r}"
