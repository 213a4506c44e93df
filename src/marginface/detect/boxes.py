"""Box maths of the MTCNN cascade, in PyTorch: overlap, greedy NMS, regression, squaring.

Boxes are float (N, 4) ``(x1, y1, x2, y2)`` in pixel indices with inclusive corners, so a box's
width is ``x2 - x1 + 1`` (the convention of the published MTCNN code the weights were trained
with; its regression offsets are fractions of that width).
"""

from __future__ import annotations

import torch

__all__ = ["box_area", "overlap", "pairwise_overlap", "nms", "batched_nms", "regress", "square"]


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """``(x2 - x1 + 1) * (y2 - y1 + 1)`` per box."""
    return (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)


def overlap(box: torch.Tensor, boxes: torch.Tensor, mode: str = "union") -> torch.Tensor:
    """Overlap of one box (4,) with each of ``boxes`` (N, 4).

    ``union``: IoU ``|A n B| / |A u B|``; ``min``: ``|A n B| / min(|A|, |B|)`` (MTCNN's last NMS).
    """
    w = (torch.minimum(box[2], boxes[:, 2]) - torch.maximum(box[0], boxes[:, 0]) + 1).clamp(min=0)
    h = (torch.minimum(box[3], boxes[:, 3]) - torch.maximum(box[1], boxes[:, 1]) + 1).clamp(min=0)
    inter = w * h
    a, b = box_area(box[None])[0], box_area(boxes)
    if mode == "union":
        return inter / (a + b - inter)
    if mode == "min":
        return inter / torch.minimum(a, b)
    raise ValueError(f"NMS mode must be 'union' or 'min', got {mode!r}")


def nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float,
        mode: str = "union") -> torch.Tensor:
    """Greedy NMS: indices of the kept boxes, highest score first.

    Take the best remaining box, drop every remaining box whose overlap with it exceeds
    ``threshold``, repeat. One vectorised overlap per kept box (no per-candidate loop).
    """
    order = torch.argsort(scores, descending=True, stable=True)
    keep: list[torch.Tensor] = []
    while order.numel() > 0:
        best = order[0]
        keep.append(best)
        if order.numel() == 1:
            break
        rest = order[1:]
        order = rest[overlap(boxes[best], boxes[rest], mode) <= threshold]
    if not keep:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    return torch.stack(keep)


def pairwise_overlap(a: torch.Tensor, b: torch.Tensor, mode: str = "union") -> torch.Tensor:
    """Overlap of every box of ``a`` (..., M, 4) with every box of ``b`` (..., K, 4)."""
    lo = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    hi = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    inter = (hi - lo + 1).clamp(min=0).prod(-1)
    area_a = ((a[..., 2:] - a[..., :2] + 1).prod(-1))[..., :, None]
    area_b = ((b[..., 2:] - b[..., :2] + 1).prod(-1))[..., None, :]
    if mode == "union":
        return inter / (area_a + area_b - inter)
    if mode == "min":
        return inter / torch.minimum(area_a, area_b)
    raise ValueError(f"NMS mode must be 'union' or 'min', got {mode!r}")


# Above this many overlap entries (groups x M x M), batched_nms falls back to one nms per group.
_MAX_BLOCK = 2**24


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor,
                threshold: float, mode: str = "union") -> torch.Tensor:
    """Greedy NMS within each group (image, pyramid level), all groups at once.

    Boxes are sorted by (group, score) and padded into (G, M) blocks; with ``S[j, i]`` = "j ranks
    before i and overlaps it above threshold", greedy NMS keeps exactly the fixed point of
    ``keep_i = not any_j (keep_j and S[j, i])``, reached by iterating from "keep all" (each round
    settles at least the next undecided box, and in practice a handful of rounds settle all).
    Returns the kept indices into ``boxes``.
    """
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.argsort(scores, descending=True, stable=True)
    order = order[torch.argsort(groups[order], stable=True)]
    group_ids, counts = torch.unique_consecutive(groups[order], return_counts=True)
    g, m = group_ids.numel(), int(counts.max())
    if g * m * m > _MAX_BLOCK:
        kept = [order[start:start + c][nms(boxes[order[start:start + c]],
                                           scores[order[start:start + c]], threshold, mode)]
                for start, c in zip((torch.cumsum(counts, 0) - counts).tolist(),
                                    counts.tolist(), strict=True)]
        return torch.cat(kept)
    starts = torch.cumsum(counts, 0) - counts
    block = torch.repeat_interleave(torch.arange(g, device=boxes.device), counts)
    slot = torch.arange(n, device=boxes.device) - starts[block]
    padded = boxes.new_zeros((g, m, 4))
    padded[block, slot] = boxes[order]
    valid = torch.zeros((g, m), dtype=torch.bool, device=boxes.device)
    valid[block, slot] = True
    earlier = torch.ones((m, m), dtype=torch.bool, device=boxes.device).triu(1)
    suppresses = (pairwise_overlap(padded, padded, mode) > threshold) & earlier & valid[:, :, None]
    keep = valid.clone()
    for _ in range(m):
        new = valid & ~(suppresses & keep[:, :, None]).any(1)
        if torch.equal(new, keep):
            break
        keep = new
    return order[keep[block, slot]]


def regress(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Apply MTCNN's box regression: each corner moves by its offset times the box side."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    return boxes + offsets * torch.stack([w, h, w, h], dim=1)


def square(boxes: torch.Tensor) -> torch.Tensor:
    """The square of side ``max(w, h)`` with the same centre (MTCNN's ``rerec``)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    x1 = boxes[:, 0] + w * 0.5 - side * 0.5
    y1 = boxes[:, 1] + h * 0.5 - side * 0.5
    return torch.stack([x1, y1, x1 + side, y1 + side], dim=1)
