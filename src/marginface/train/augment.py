"""Face augmentations of aligned training crops, drawn per image from ``(seed, epoch)``.

Each image of an epoch gets seven uniform numbers from a generator seeded by the run's seed and
the epoch (like its flip, ``sampling.flip_mask``), indexed by the image's position in the
dataset: the same image in the same epoch is augmented the same way whatever the batch layout,
the DataLoader workers or a resume. On a batch of 0..255 pixels, before normalisation:

- scale and translation jitter of the crop: an affine resample (bilinear, border padding),
  zoom ``1 + scale * (2u - 1)``, shift ``translate * (2u - 1)`` of the width / height;
- brightness ``x * b``, contrast ``(x - mean) * c + mean`` (mean grey of the image), saturation
  ``(x - grey) * s + grey`` (grey = 0.299 R + 0.587 G + 0.114 B, ITU-R BT.601), each factor in
  ``[1 - v, 1 + v]``;
- greyscale with probability ``greyscale``.

Clamped to 0..255. With every value 0 (the default) nothing runs and a face's training input is
bit-identical to its evaluation input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from marginface.train.config import AugmentConfig

__all__ = ["NUM_DRAWS", "augment_enabled", "augment_draws", "augment_batch"]

NUM_DRAWS = 7
_LUMA = (0.299, 0.587, 0.114)


def augment_enabled(config: AugmentConfig) -> bool:
    return any(getattr(config, k) > 0 for k in ("scale", "translate", "brightness", "contrast",
                                                 "saturation", "greyscale"))


def augment_draws(seed: int, epoch: int, length: int) -> torch.Tensor:
    """(length, 7) uniforms in [0, 1): image i's augmentation in ``epoch``."""
    generator = torch.Generator().manual_seed(seed * 1_000_033 + epoch * 104_729 + 29)
    return torch.rand((length, NUM_DRAWS), generator=generator)


def _grey(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def augment_batch(pixels: torch.Tensor, draws: torch.Tensor,
                  config: AugmentConfig) -> torch.Tensor:
    """RGB (N, 3, H, W) float pixels 0..255 and their (N, 7) draws -> augmented pixels."""
    x = pixels.float()
    u = draws.to(x.device, torch.float32) * 2 - 1  # [-1, 1)
    n = x.shape[0]
    if config.scale > 0 or config.translate > 0:
        zoom = 1 + config.scale * u[:, 0]
        theta = torch.zeros(n, 2, 3, device=x.device)
        theta[:, 0, 0] = theta[:, 1, 1] = 1 / zoom  # sampling grid shrinks: the face grows
        theta[:, 0, 2] = 2 * config.translate * u[:, 1]  # normalised coordinates span 2
        theta[:, 1, 2] = 2 * config.translate * u[:, 2]
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if config.brightness > 0:
        x = x * (1 + config.brightness * u[:, 3]).view(n, 1, 1, 1)
    if config.contrast > 0:
        mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (1 + config.contrast * u[:, 4]).view(n, 1, 1, 1) + mean
    if config.saturation > 0:
        grey = _grey(x)
        x = (x - grey) * (1 + config.saturation * u[:, 5]).view(n, 1, 1, 1) + grey
    if config.greyscale > 0:
        make_grey = (draws[:, 6].to(x.device) < config.greyscale).view(n, 1, 1, 1)
        x = torch.where(make_grey, _grey(x).expand_as(x), x)
    return x.clamp(0, 255)
