"""Every head kind (the binary heads included), trained a few hundred steps with a tiny linear
embedder on a separable synthetic problem, classifies held-out points (eval-mode argmax) with
>= 95% accuracy, and its loss halves."""

from __future__ import annotations

import pytest
import torch
from heads_cases import single_thread  # noqa: F401  (autouse fixture)
from torch import nn

from marginface.heads import (
    ArcFace,
    CombinedMargin,
    CosFace,
    NormFace,
    Softmax,
    SphereFace,
    SphereFace2,
    UniFace,
)

NUM_CLASSES, INPUT_DIM, EMBED_DIM = 8, 16, 8


def _blobs(generator: torch.Generator, centres: torch.Tensor, per_class: int):
    labels = torch.arange(NUM_CLASSES).repeat_interleave(per_class)
    points = centres[labels] + 0.5 * torch.randn(len(labels), INPUT_DIM, generator=generator)
    return points, labels


HEADS = {
    "softmax": lambda: Softmax(EMBED_DIM, NUM_CLASSES),
    "normface": lambda: NormFace(EMBED_DIM, NUM_CLASSES),
    "cosface": lambda: CosFace(EMBED_DIM, NUM_CLASSES, scale=30.0),
    "arcface": lambda: ArcFace(EMBED_DIM, NUM_CLASSES),
    "arcface_straight_through": lambda: ArcFace(EMBED_DIM, NUM_CLASSES, detach_margin=True),
    "combined": lambda: CombinedMargin(EMBED_DIM, NUM_CLASSES),
    "combined_m1_1.35": lambda: CombinedMargin(EMBED_DIM, NUM_CLASSES, m1=1.35, m2=0.0, m3=0.0),
    "sphereface": lambda: SphereFace(EMBED_DIM, NUM_CLASSES),
    # the binary heads at their paper defaults (the bias learns with the rest)
    "sphereface2": lambda: SphereFace2(EMBED_DIM, NUM_CLASSES),
    "uniface": lambda: UniFace(EMBED_DIM, NUM_CLASSES),
}


@pytest.mark.parametrize("name", list(HEADS))
def test_head_learns_a_separable_problem(name):
    generator = torch.Generator().manual_seed(7)
    # class centres 4 apart from the origin, noise 0.5 per coordinate: separable
    centres = 4.0 * torch.nn.functional.normalize(
        torch.randn(NUM_CLASSES, INPUT_DIM, generator=generator), dim=1)
    train_x, train_y = _blobs(generator, centres, 40)
    test_x, test_y = _blobs(generator, centres, 25)  # held out: fresh noise
    embedder = nn.Linear(INPUT_DIM, EMBED_DIM)
    head = HEADS[name]()
    optimiser = torch.optim.Adam([*embedder.parameters(), *head.parameters()], lr=0.02)
    head.train()
    losses = []
    for _ in range(300):
        optimiser.zero_grad()
        loss = head.loss(embedder(train_x), train_y)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    head.eval()
    with torch.no_grad():
        accuracy = float((head(embedder(test_x)).argmax(dim=1) == test_y).float().mean())
    assert accuracy >= 0.95, f"{name}: accuracy {accuracy:.3f}"
    assert losses[-1] < 0.5 * losses[0]
    if isinstance(head, SphereFace):
        assert int(head.iteration) == 300 and head.current_lambda() == pytest.approx(1000 / 37.0)
