"""Every head sharded over 2 gloo processes (sample rate 1) equals the head's own ``.loss``.

Cases: every registered head, a user's subclass of ArcFace, and the two interface test heads
(per-sample margin with the radial term and an extra loss; changed negatives with moving state
from the global batch). Loss, embedding gradients, the gathered class-row gradients, the
gradients of replicated parameters (the binary heads' bias) and the head state after the step all
match the single process on the same global batch.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from heads_cases import TEST_OPTIONS
from interface_heads import CurricularLike, NormMarginArcFace

from marginface.heads import ArcFace, create_head, list_heads
from marginface.train.sharded_classifier import ShardedClassifier

WORLD, LOCAL_BATCH, DIM, CLASSES = 2, 4, 6, 11  # shards of 6 and 5 classes


class UserArcFace(ArcFace):
    """A user's subclass: its own default scale and a target read from its own attribute."""

    def __init__(self, embedding_dim: int, num_classes: int, **kwargs) -> None:
        kwargs.setdefault("scale", 5.0)
        super().__init__(embedding_dim, num_classes, **kwargs)


def _registered():
    return {name: (lambda n=name: create_head(n, DIM, CLASSES, block_size=2,
                                              **TEST_OPTIONS.get(n, {})))
            for name in list_heads()}


CASES = {
    "registered": _registered,
    "subclass": lambda: {"user_arcface": lambda: UserArcFace(DIM, CLASSES, margin=0.4,
                                                             block_size=2)},
    "per_sample_margin": lambda: {
        "live_norm_and_extra_loss": lambda: NormMarginArcFace(
            DIM, CLASSES, scale=4.0, margin=0.3, slope=0.05, reg=0.3, block_size=2),
        "detached_norm": lambda: NormMarginArcFace(
            DIM, CLASSES, scale=4.0, margin=0.3, slope=0.08, detach_norm=True, block_size=2)},
    "negatives": lambda: {"curricular": lambda: CurricularLike(DIM, CLASSES, scale=4.0,
                                                               margin=0.2, t=0.3, block_size=2)},
}


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _check_head(rank: int, make, seed: int) -> None:
    torch.manual_seed(seed)
    head = make().double()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(WORLD * LOCAL_BATCH, DIM, generator=gen, dtype=torch.float64) * 2.0
    y = torch.randint(0, CLASSES, (WORLD * LOCAL_BATCH,), generator=gen)
    y[0], y[-1] = 5, 6  # the last class of shard 0 and the first of shard 1
    single = copy.deepcopy(head)
    clf = ShardedClassifier(head, rank=rank, world_size=WORLD)
    for _ in range(2):  # two steps: schedules and moving state advance alike
        xs = x.clone().requires_grad_()
        single.zero_grad()
        loss = single.loss(xs, y)
        loss.backward()
        rows = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        xl = x[rows].clone().requires_grad_()
        clf.zero_grad()
        sharded = clf.loss(xl, y[rows])
        sharded.backward()
        _close(sharded, loss)
        _close(xl.grad, xs.grad[rows])
        for name in single.class_tensors:
            _close(clf.gather_rows(getattr(clf.head, name).grad), getattr(single, name).grad)
        replicated = dict(clf.head.named_parameters())  # the binary heads' bias: whole per rank
        for name, param in single.named_parameters():
            if name not in single.class_tensors:
                _close(replicated[name].grad, param.grad)
        # the global gradient norm counts each class row once and each replicated value once
        norm = torch.stack([p.grad.pow(2).sum() for p in single.parameters()]).sum().sqrt()
        assert clf.clip_grad_norm([], float("inf")) == pytest.approx(float(norm), rel=1e-5)
        full = clf.full_state_dict()
        assert full.keys() == single.state_dict().keys()
        for key, value in single.state_dict().items():
            _close(full[key], value)
        x = x * 1.1


def _worker(rank: int, init: str, case: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        for seed, make in enumerate(CASES[case]().values()):
            _check_head(rank, make, seed)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("case", list(CASES))
def test_sharded_head_equals_single_process_head(case, tmp_path):
    mp.spawn(_worker, args=(f"file://{tmp_path / 'store'}", case), nprocs=WORLD, join=True)


def test_the_sharded_classifier_keeps_only_its_rows_of_the_head():
    head = create_head("softmax", DIM, CLASSES)
    clf = ShardedClassifier(head, rank=1, world_size=WORLD)
    assert clf.weight.shape == (5, DIM) and clf.bias.shape == (5,)
    assert sorted(n for n, _ in clf.named_parameters()) == ["head.bias", "head.weight"]
    torch.testing.assert_close(clf.weight, head.weight[6:])
    sph = ShardedClassifier(create_head("sphereface", DIM, CLASSES, iteration=4), rank=0,
                            world_size=WORLD)
    assert int(sph.head.iteration) == 4 and sph.weight.shape == (6, DIM)
    with pytest.raises(ValueError, match="carries its own sizes"):
        ShardedClassifier(head, rank=0, world_size=WORLD, scale=3.0)
