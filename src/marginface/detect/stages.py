"""The MTCNN cascade's stages: image pyramid + P-Net proposals, batched crops for R-Net/O-Net.

Zhang et al. 2016: P-Net slides a 12x12 window (stride 2) over every pyramid level
``s_k = (12 / min_face) * factor^k`` while ``min(H, W) * s_k >= 12``; each window whose face
probability passes the threshold becomes a box ``[2x / s, 2y / s, (2x + 12) / s - 1, ...]``
moved by its regression offsets. R-Net and O-Net re-score square crops of the survivors resized
to 24x24 and 48x48.

Images are float (N, 3, H, W) RGB pixel values 0..255; the networks see
``(x - 127.5) * 0.0078125``. Crops outside the image read pixel value 0 (as the reference code
pads), and are supersampled and averaged when they shrink a lot, to approximate area
resampling without a per-crop loop.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from marginface.detect.boxes import batched_nms

__all__ = ["pyramid_scales", "normalise", "pnet_proposals", "crop_boxes"]

# Crops are supersampled at most 2**this times per axis.
MAX_SUPERSAMPLE_LOG2 = 1


def pyramid_scales(height: int, width: int, min_face: float = 20.0,
                   factor: float = 0.709) -> list[float]:
    """Scales ``(12 / min_face) * factor^k`` for k = 0, 1, ... while the short side stays >= 12."""
    if min_face < 12:
        raise ValueError(f"min_face must be >= 12 pixels (P-Net's window), got {min_face}")
    if not 0.0 < factor < 1.0:
        raise ValueError(f"pyramid factor must be in (0, 1), got {factor}")
    base = 12.0 / min_face
    scales: list[float] = []
    side = min(height, width) * base
    while side >= 12:
        scales.append(base * factor ** len(scales))
        side *= factor
    return scales


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """``(x - 127.5) * 0.0078125``: the input scaling MTCNN was trained with."""
    return (pixels - 127.5) * 0.0078125


@torch.no_grad()
def pnet_proposals(pnet: torch.nn.Module, images: torch.Tensor, scales: list[float],
                   threshold: float, nms_threshold: float = 0.5
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """P-Net over the pyramid of a batch of same-size images.

    Returns ``(image_index, boxes, scores, offsets)``: windows above ``threshold`` after NMS per
    image and level (boxes in original pixels, offsets not yet applied).
    """
    _, _, height, width = images.shape
    found: list[tuple[torch.Tensor, ...]] = []
    # Area resampling is linear: normalising once before the pyramid is the same as per level.
    normalised = normalise(images)
    for scale in scales:
        size = (math.ceil(height * scale), math.ceil(width * scale))
        prob, reg = pnet(F.interpolate(normalised, size=size, mode="area"))
        n, y, x = torch.nonzero(prob >= threshold, as_tuple=True)
        if n.numel() == 0:
            continue
        xs, ys = x.to(images.dtype) * 2, y.to(images.dtype) * 2
        # The 12x12 window at this level maps back to [2x, 2x + 12) / scale in the image.
        boxes = torch.stack([xs / scale, ys / scale, (xs + 12) / scale - 1,
                             (ys + 12) / scale - 1], dim=1).floor()
        scores = prob[n, y, x]
        offsets = reg[n, :, y, x]
        keep = batched_nms(boxes, scores, n, nms_threshold)
        found.append((n[keep], boxes[keep], scores[keep], offsets[keep]))
    if not found:
        empty = images.new_zeros((0, 4))
        return images.new_zeros(0, dtype=torch.long), empty, images.new_zeros(0), empty
    n, boxes, scores, offsets = (torch.cat(parts) for parts in zip(*found, strict=True))
    return n, boxes, scores, offsets


def _grid(boxes: torch.Tensor, size: int, height: int, width: int) -> torch.Tensor:
    """Sampling grid (1, B * size, size, 2): output pixel j of a box spanning pixels x1..x2
    samples ``x1 - 0.5 + (j + 0.5) * (x2 - x1 + 1) / size`` (pixel centres at integers)."""
    t = (torch.arange(size, device=boxes.device, dtype=boxes.dtype) + 0.5) / size
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    xs = boxes[:, 0, None] - 0.5 + t[None] * w[:, None]
    ys = boxes[:, 1, None] - 0.5 + t[None] * h[:, None]
    # grid_sample's align_corners=False coordinates: -1 and 1 are the image's outer edges.
    gx = (2 * xs + 1) / width - 1
    gy = (2 * ys + 1) / height - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
    return grid.reshape(1, -1, size, 2)


def crop_boxes(images: torch.Tensor, image_index: torch.Tensor, boxes: torch.Tensor,
               size: int) -> torch.Tensor:
    """Crops (B, 3, size, size) of ``boxes`` (integer corners) from ``images``, normalised.

    A box that shrinks by ``r >= 2`` is sampled on a ``k`` times finer grid (k the largest power
    of two <= r, at most 4) and average-pooled by ``k``: close to area resampling. One
    ``grid_sample`` per image and ``k``, so the cost grows with images, not boxes.
    """
    _, channels, height, width = images.shape
    out = images.new_zeros((boxes.shape[0], channels, size, size))
    if boxes.numel() == 0:
        return out
    side = torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) + 1
    fine = (2 ** torch.log2(side / size).floor().clamp(0, MAX_SUPERSAMPLE_LOG2)).long()
    for image in torch.unique(image_index).tolist():
        for k in torch.unique(fine[image_index == image]).tolist():
            pick = torch.nonzero((image_index == image) & (fine == k)).flatten()
            grid = _grid(boxes[pick], size * k, height, width)
            sampled = F.grid_sample(images[image:image + 1], grid, mode="bilinear",
                                    padding_mode="zeros", align_corners=False)
            crops = sampled.reshape(channels, pick.numel(), size * k, size * k).transpose(0, 1)
            out[pick] = F.avg_pool2d(crops, k) if k > 1 else crops
    return normalise(out)
