"""ShardedClassifier: 2 gloo processes on CPU give the single-process fused loss and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from marginface.heads.fused import LogitSpec, fused_cross_entropy
from marginface.train.sharded_classifier import ShardedClassifier, shard_range

WORLD, LOCAL_BATCH, DIM, CLASSES = 2, 5, 6, 37  # 37 classes: shards of 19 and 18 rows


def _global_data(seed: int):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(WORLD * LOCAL_BATCH, DIM, generator=gen, dtype=torch.float64)
    w = torch.randn(CLASSES, DIM, generator=gen, dtype=torch.float64)
    b = torch.randn(CLASSES, generator=gen, dtype=torch.float64)
    y = torch.randint(0, CLASSES, (WORLD * LOCAL_BATCH,), generator=gen)
    y[0], y[-1] = 18, 19  # the last row of shard 0 and the first of shard 1
    return x, w, b, y


def _single(spec: LogitSpec, x, w, b, y, block=4):
    x = x.clone().requires_grad_()
    w = w.clone().requires_grad_()
    b = None if b is None else b.clone().requires_grad_()
    loss = fused_cross_entropy(x, w, y, spec, bias=b, block_size=block)
    params = (x, w) if b is None else (x, w, b)
    return (loss, *torch.autograd.grad(loss, params))


def _sharded_step(rank, clf, x, y):
    rows = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
    xl = x[rows].clone().requires_grad_()
    loss = clf.loss(xl, y[rows])
    loss.backward()
    return loss, xl.grad


def _gather_grad(clf, grad):
    parts = [torch.zeros(19, *grad.shape[1:], dtype=grad.dtype) for _ in range(WORLD)]
    padded = torch.zeros_like(parts[0])
    padded[: grad.shape[0]] = grad
    dist.all_gather(parts, padded)
    return torch.cat([p[: shard_range(CLASSES, r, WORLD)[1]] for r, p in enumerate(parts)])


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _worker(rank: int, init: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        cases = [
            ("arcface", {}, LogitSpec("margin", scale=64.0, m2=0.5)),
            ("combined", {"m1": 1.35, "detach_margin": True},
             LogitSpec("margin", scale=64.0, m1=1.35, m2=0.3, m3=0.2, detach_margin=True)),
            ("softmax", {}, LogitSpec("softmax")),
        ]
        for seed, (name, kwargs, spec) in enumerate(cases):
            x, w, b, y = _global_data(seed)
            clf = ShardedClassifier(name, DIM, CLASSES, rank=rank, world_size=WORLD,
                                    block_size=4, **kwargs).double()
            clf.load_full_state_dict({"weight": w, "bias": b})
            loss, gx = _sharded_step(rank, clf, x, y)
            ref = _single(spec, x, w, b if name == "softmax" else None, y)
            _close(loss, ref[0])
            _close(gx, ref[1][rank * LOCAL_BATCH:(rank + 1) * LOCAL_BATCH])
            _close(_gather_grad(clf, clf.weight.grad), ref[2])
            if name == "softmax":
                _close(_gather_grad(clf, clf.bias.grad), ref[3])
            full = clf.full_state_dict()
            _close(full["weight"], w)

        # SphereFace: lambda follows the iteration counter, advanced on every training loss.
        x, w, _, y = _global_data(7)
        clf = ShardedClassifier({"name": "sphereface", "iteration": 3}, DIM, CLASSES, rank=rank,
                                world_size=WORLD, block_size=4).double()
        clf.load_full_state_dict({"weight": w})
        for step in (4, 5):
            clf.zero_grad()
            loss, gx = _sharded_step(rank, clf, 3 * x, y)
            assert int(clf.head.iteration) == step
            spec = LogitSpec("sphereface", m=4, lambda_=clf.head.current_lambda())
            ref = _single(spec, 3 * x, w, None, y)
            _close(loss, ref[0])
            _close(gx, ref[1][rank * LOCAL_BATCH:(rank + 1) * LOCAL_BATCH])
            _close(_gather_grad(clf, clf.weight.grad), ref[2])

        # Partial FC: the loss over the kept rows; positives always kept; others get no gradient.
        x, w, _, y = _global_data(11)
        clf = ShardedClassifier("cosface", DIM, CLASSES, rank=rank, world_size=WORLD,
                                sample_rate=0.3, block_size=4).double()
        clf.load_full_state_dict({"weight": w})
        torch.manual_seed(100 + rank)
        loss, gx = _sharded_step(rank, clf, x, y)
        grad_w = _gather_grad(clf, clf.weight.grad)
        touched = grad_w.abs().sum(1) > 0
        kept = touched.nonzero().squeeze(1)
        assert set(y.tolist()) <= set(kept.tolist())
        assert kept.numel() <= sum(
            max(int(torch.tensor(0.3 * n).ceil()), 0) + LOCAL_BATCH * WORLD
            for n in (19, 18))
        assert kept.numel() < CLASSES
        remap = torch.full((CLASSES,), -1, dtype=torch.long)
        remap[kept] = torch.arange(kept.numel())
        ref = _single(LogitSpec("margin", scale=64.0, m3=0.35), x, w[kept], None, remap[y])
        _close(loss, ref[0])
        _close(gx, ref[1][rank * LOCAL_BATCH:(rank + 1) * LOCAL_BATCH])
        _close(grad_w[kept], ref[2])
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_equal_single_process(tmp_path):
    init = f"file://{tmp_path / 'store'}"
    mp.spawn(_worker, args=(init,), nprocs=WORLD, join=True)


def test_reshard_full_classifier_for_other_world_sizes():
    full = torch.randn(CLASSES, DIM)
    for world in (1, 3, 4):
        shards = []
        for rank in range(world):
            clf = ShardedClassifier("arcface", DIM, CLASSES, rank=rank, world_size=world)
            clf.load_full_state_dict({"weight": full})
            assert clf.num_local == CLASSES // world + (rank < CLASSES % world)
            shards.append(clf.weight.detach())
        torch.testing.assert_close(torch.cat(shards), full)


def test_single_process_equals_fused_function():
    x, w, _, y = _global_data(3)
    clf = ShardedClassifier("arcface", DIM, CLASSES, rank=0, world_size=1, block_size=8).double()
    clf.load_full_state_dict({"weight": w})
    loss = clf.loss(x, y)
    ref = _single(LogitSpec("margin", scale=64.0, m2=0.5), x, w, None, y)
    _close(loss, ref[0])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(head="nope"), "name must be one of"),
        (dict(head="arcface", margin=4.0), "margin must be an angle"),
        (dict(head="arcface", m=4), "unknown argument"),
        (dict(head="arcface", rank=2), "rank must be"),
        (dict(head="arcface", sample_rate=0.0), "sample_rate"),
        (dict(head="sphereface", m=7), "m must be an integer"),
        (dict(head="arcface", block_size=0), "block_size"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = dict(embedding_dim=DIM, num_classes=CLASSES, rank=0, world_size=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ShardedClassifier(args.pop("head"), **args)


def test_bad_input_and_state():
    clf = ShardedClassifier("arcface", DIM, CLASSES, rank=0, world_size=1)
    with pytest.raises(ValueError, match=r"labels\[1\] = 37"):
        clf.loss(torch.randn(2, DIM), torch.tensor([0, 37]))
    with pytest.raises(ValueError, match="local_embeddings must have shape"):
        clf.loss(torch.randn(2, DIM + 1), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"state\['weight'\] must have shape"):
        clf.load_full_state_dict({"weight": torch.randn(CLASSES - 1, DIM)})
