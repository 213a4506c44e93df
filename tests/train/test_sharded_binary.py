"""Partial FC with the binary heads: drawn negatives weighted by ``pool / drawn`` make the
sampled loss an unbiased estimate of the full one-vs-all loss (one process, sample rate < 1).

The sharded 2-process run at sample rate 1 is in test_sharded_heads.py (every registered head)."""

from __future__ import annotations

import math

import pytest
import torch
from binary_references import uniface_scores

from marginface.heads import SphereFace2, UniFace
from marginface.train.sharded_classifier import ShardedClassifier

D, C, B = 6, 12, 8


def _setup(head):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(B, D, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 3, 3, 5, 7, 7])  # 5 positive classes, 7 to draw from
    head = head.double()
    with torch.no_grad():
        head.weight.normal_(generator=gen)
    return x, y, ShardedClassifier(head, rank=0, world_size=1, sample_rate=0.5).train()


def test_one_draw_is_the_restated_loss_over_the_kept_classes_with_their_weights():
    head = UniFace(D, C, scale=4.0, margin=0.3, lambda_=0.8, block_size=3)
    x, y, clf = _setup(head)
    torch.manual_seed(11)
    loss = clf.loss(x, y)
    torch.manual_seed(11)  # the same draw, by hand: 6 kept = 5 positives + 1 of the 7 others
    score = torch.rand(C, dtype=torch.float32)
    positives = torch.unique(y)
    score[positives] = 2.0
    kept = score.topk(6).indices
    weights = torch.zeros(C, dtype=torch.float64)
    weights[kept] = (C - positives.numel()) / (6 - positives.numel())
    weights[positives] = 1.0
    b = clf.head.bias.detach()
    pos, neg = uniface_scores(x, clf.head.weight.detach(), b, y, s=4.0, m=0.3, margin_type="cos")
    onehot = torch.nn.functional.one_hot(y, C).bool()
    zero = torch.zeros_like(pos)
    terms = torch.where(onehot, torch.logaddexp(-pos, zero),
                        0.8 * weights * torch.logaddexp(neg, zero))
    torch.testing.assert_close(loss, terms.sum(1).mean(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make", [
    lambda: UniFace(D, C, scale=4.0, margin=0.3, block_size=3),
    lambda: SphereFace2(D, C, scale=6.0, margin=0.2, block_size=5)])
def test_weighted_draws_average_to_the_full_loss_and_unweighted_ones_do_not(make):
    x, y, clf = _setup(make())
    full = float(clf.head.unfused_loss(x, y).detach())
    torch.manual_seed(0)
    with torch.no_grad():
        draws = torch.tensor([float(clf.loss(x, y)) for _ in range(300)], dtype=torch.float64)
    stderr = float(draws.std()) / math.sqrt(draws.numel())
    assert abs(float(draws.mean()) - full) < 4 * stderr, (float(draws.mean()), full, stderr)
    # without the weights the sampled sum misses about half of the drawn negatives' terms
    clf.head.weights_sampled_classes = False
    torch.manual_seed(0)
    with torch.no_grad():
        plain = torch.tensor([float(clf.loss(x, y)) for _ in range(300)], dtype=torch.float64)
    assert float(plain.mean()) < full - 10 * stderr


def test_class_weights_are_for_binary_losses_and_one_per_class():
    from marginface.heads import LogitSpec, fused_cross_entropy

    x, y = torch.randn(B, D), torch.randint(0, C, (B,))
    w = torch.randn(C, D)
    with pytest.raises(ValueError, match="class_weights need a binary loss"):
        fused_cross_entropy(x, w, y, LogitSpec("margin", scale=4.0, class_weights=torch.ones(C)))
    with pytest.raises(ValueError, match=r"class_weights must have shape \(12,\)"):
        fused_cross_entropy(x, w, y, LogitSpec("margin", scale=4.0, binary=True,
                                               class_weights=torch.ones(C - 1)))


@pytest.mark.parametrize("sample_rate", [1.0, 0.5])
def test_the_trainer_does_not_decay_the_binary_bias(sample_rate):
    from marginface.train.classifier import LocalClassifier
    from marginface.train.config import load_config
    from marginface.train.optim import build_run_optimizers

    config = load_config(None, ["train.max_steps=1", "head.name=uniface",
                                "optimizer.weight_decay=0.01"])
    head = UniFace(D, C)
    classifier = LocalClassifier(head) if sample_rate == 1.0 else ShardedClassifier(
        head, rank=0, world_size=1, sample_rate=sample_rate)
    _, head_optimizer, _ = build_run_optimizers(config, torch.nn.Linear(3, D), classifier, 10)
    groups = {id(p): g["weight_decay"] for g in head_optimizer.param_groups for p in g["params"]}
    owner = classifier.head
    assert groups == {id(owner.weight): 0.01, id(owner.bias): 0.0}


def test_optimizer_state_gathers_class_rows_only_never_the_replicated_bias(monkeypatch):
    # one class on this rank: the bias's momentum (1,) has as many rows as the weight's
    clf = ShardedClassifier(UniFace(D, 2), rank=1, world_size=2)
    assert clf.num_local == 1
    optimizer = torch.optim.SGD(clf.parameters(), lr=0.1, momentum=0.9)
    clf.head.loss(torch.randn(3, D), torch.tensor([0, 0, 0])).backward()
    optimizer.step()
    gathered = []
    monkeypatch.setattr(clf, "gather_rows", lambda t: gathered.append(t.shape) or t.clone())
    state = clf.full_optimizer_state(optimizer)
    assert gathered == [torch.Size([1, D])]
    bias_key = [p is clf.head.bias for p in optimizer.param_groups[0]["params"]].index(True)
    assert state["state"][bias_key]["momentum_buffer"].shape == (1,)
