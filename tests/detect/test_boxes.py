"""Box maths against hand-computed values and a plain-Python greedy NMS."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from marginface.detect.boxes import (
    batched_nms,
    nms,
    overlap,
    pairwise_overlap,
    regress,
    square,
)


def _greedy(boxes: np.ndarray, scores: np.ndarray, t: float, mode: str) -> list[int]:
    """Reference greedy NMS, one box at a time, in plain Python."""
    def ov(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
        inter = w * h
        area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
        den = area(a) + area(b) - inter if mode == "union" else min(area(a), area(b))
        return inter / den

    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    kept: list[int] = []
    for i in order:
        if all(ov(boxes[k], boxes[i]) <= t for k in kept):
            kept.append(i)
    return kept


def test_overlap_hand_values():
    a = torch.tensor([0.0, 0.0, 9.0, 9.0])  # 10x10 (inclusive corners)
    b = torch.tensor([[5.0, 0.0, 14.0, 9.0], [20.0, 20.0, 29.0, 29.0], [0.0, 0.0, 4.0, 4.0]])
    # intersections 50, 0, 25; unions 150, 200, 100; smaller areas 100, 100, 25
    assert torch.allclose(overlap(a, b), torch.tensor([50 / 150, 0.0, 25 / 100]))
    assert torch.allclose(overlap(a, b, "min"), torch.tensor([0.5, 0.0, 1.0]))
    assert torch.allclose(pairwise_overlap(a[None], b)[0], overlap(a, b))
    with pytest.raises(ValueError, match="mode"):
        overlap(a, b, "max")


def _random_boxes(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 60
    wh = torch.rand(n, 2, generator=g) * 30 + 2
    return torch.cat([xy, xy + wh], 1).double(), torch.rand(n, generator=g).double()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 40),
       t=st.sampled_from([0.3, 0.5, 0.7]), mode=st.sampled_from(["union", "min"]))
def test_nms_matches_plain_greedy(seed, n, t, mode):
    boxes, scores = _random_boxes(seed, n)
    expected = _greedy(boxes.numpy(), scores.numpy(), t, mode)
    assert nms(boxes, scores, t, mode).tolist() == expected


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 60), groups=st.integers(1, 4),
       mode=st.sampled_from(["union", "min"]))
def test_batched_nms_is_greedy_within_each_group(seed, n, groups, mode):
    boxes, scores = _random_boxes(seed, n)
    group = torch.arange(n) % groups
    kept = set(batched_nms(boxes, scores, group, 0.5, mode).tolist())
    expected: set[int] = set()
    for g in range(groups):
        idx = torch.nonzero(group == g).flatten()
        expected |= {int(idx[i]) for i in _greedy(boxes[idx].numpy(), scores[idx].numpy(),
                                                   0.5, mode)}
    assert kept == expected


def test_batched_nms_fallback_agrees(monkeypatch):
    import marginface.detect.boxes as module

    boxes, scores = _random_boxes(3, 50)
    group = torch.arange(50) % 3
    blocked = set(batched_nms(boxes, scores, group, 0.5).tolist())
    monkeypatch.setattr(module, "_MAX_BLOCK", 1)
    assert set(batched_nms(boxes, scores, group, 0.5).tolist()) == blocked


def test_regress_and_square_hand_values():
    box = torch.tensor([[10.0, 20.0, 19.0, 39.0]])  # w = 10, h = 20 (inclusive)
    moved = regress(box, torch.tensor([[0.1, -0.05, 0.2, 0.5]]))
    assert torch.allclose(moved, torch.tensor([[11.0, 19.0, 21.0, 49.0]]))
    sq = square(torch.tensor([[0.0, 0.0, 10.0, 30.0]]))  # centre (5, 15), side 30
    assert torch.allclose(sq, torch.tensor([[-10.0, 0.0, 20.0, 30.0]]))
