"""Sub-center ArcFace: max over K sub-centres inside the fused blocks (value and gradient at the
arg-max), the (C * K, D) weight, agreement with pytorch-metric-learning's SubCenterArcFaceLoss
and with a plain-torch restatement of the paper."""

from __future__ import annotations

import copy
import math

import pytest
import pytorch_metric_learning.losses as pml_losses
import torch
import torch.nn.functional as F
from heads_cases import single_thread  # noqa: F401  (autouse fixture)
from modern_references import psi

from marginface.heads import LogitSpec, SubCenterArcFace, create_head, fused_cross_entropy
from marginface.heads.fused import batch_stats

D, C, B, K = 6, 7, 9, 3


def _data(seed: int):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, D, generator=gen, dtype=torch.float64) * 2.0
    w = torch.randn(C * K, D, generator=gen, dtype=torch.float64)
    y = torch.randint(0, C, (B,), generator=gen)
    return x, w, y


def reference(x, w, y, *, scale, margin, k):
    """Deng et al. 2020, eq. 1-2: cos = max over the class's sub-centres, ArcFace on top."""
    cos = (F.normalize(x, dim=1) @ F.normalize(w, dim=1).t()).view(x.shape[0], -1, k).amax(2)
    cos_y = cos.gather(1, y[:, None]).squeeze(1)
    target = psi(torch.acos(cos_y) + margin)
    return F.cross_entropy(scale * cos.scatter(1, y[:, None], target[:, None]), y)


@pytest.mark.parametrize("block_size", [None, 1, 2, 5])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_fused_and_unfused_equal_the_restatement(block_size, k):
    x, w, y = _data(k)
    w = w[: C * k]
    head = SubCenterArcFace(D, C, scale=4.0, margin=0.4, sub_centers=k,
                            block_size=block_size).double()
    assert head.weight.shape == (C * k, D)
    with torch.no_grad():
        head.weight.copy_(w)
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    ref = reference(xr, wr, y, scale=4.0, margin=0.4, k=k)
    expected = (ref, *torch.autograd.grad(ref, (xr, wr)))
    for path in ("loss", "unfused_loss"):
        xf = x.clone().requires_grad_()
        got = getattr(head, path)(xf, y)
        grads = torch.autograd.grad(got, (xf, head.weight))
        for a, b in zip((got, *grads), expected, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_gradient_reaches_only_the_nearest_sub_centre():
    x, w, y = _data(1)
    head = SubCenterArcFace(D, C, scale=4.0, sub_centers=K, block_size=2).double()
    with torch.no_grad():
        head.weight.copy_(w)
    head.loss(x[:1], y[:1]).backward()
    cos = head.sub_center_cosines(x[:1]).detach()[0]  # (C, K)
    nearest = cos.argmax(1)
    touched = head.weight.grad.view(C, K, D).abs().sum(2) > 0
    assert torch.equal(touched, F.one_hot(nearest, K).bool())


@pytest.mark.parametrize("matmul_dtype", [torch.bfloat16, torch.float16])
def test_low_precision_products_are_close(matmul_dtype):
    x, w, y = _data(2)
    ref = SubCenterArcFace(D, C, scale=8.0, block_size=2)
    low = SubCenterArcFace(D, C, scale=8.0, block_size=2, matmul_dtype=matmul_dtype)
    with torch.no_grad():
        ref.weight.copy_(w.float())
        low.weight.copy_(w.float())
    a, b = ref.loss(x.float(), y), low.loss(x.float(), y)
    torch.testing.assert_close(a, b, rtol=0.03, atol=0.03)
    a.backward()
    b.backward()
    assert torch.isfinite(low.weight.grad).all()
    torch.testing.assert_close(low.weight.grad, ref.weight.grad, rtol=0.05, atol=0.02)


def test_gradcheck_of_the_fused_sub_centre_loss():
    x, w, y = _data(3)
    spec = LogitSpec("margin", scale=4.0, m2=0.3, sub_centers=K)
    xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b: fused_cross_entropy(a, b, y, spec, block_size=2), (xg, wg))


def test_batch_stats_target_cosine_is_the_max_over_sub_centres():
    x, w, y = _data(4)
    stats = batch_stats(x, w, y, y, target_cos=True, sub_centers=K)
    cos = (F.normalize(x) @ F.normalize(w).t()).view(B, C, K).amax(2)
    torch.testing.assert_close(stats.target_cos, cos[torch.arange(B), y])


def test_finite_at_cos_pm1():
    head = SubCenterArcFace(D, 2, scale=64.0, sub_centers=K).double()
    with torch.no_grad():
        head.weight.copy_(torch.eye(2 * K, D, dtype=torch.float64))
    x = torch.zeros(4, D, dtype=torch.float64)
    x[0, 0], x[1, 0], x[2, 3], x[3, 5] = 1.0, -1.0, 1.0, -1.0
    x.requires_grad_()
    loss = head.loss(x, torch.tensor([0, 0, 1, 1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    assert torch.isfinite(head.weight.grad).all()


def test_agrees_with_pml_sub_center_arcface_loss():
    gen = torch.Generator().manual_seed(5)
    dim, classes, batch, margin, scale = 12, 7, 24, 0.3, 16.0
    x = torch.randn(batch, dim, generator=gen, dtype=torch.float64)
    y = torch.randint(0, classes, (batch,), generator=gen)
    head = SubCenterArcFace(dim, classes, scale=scale, margin=margin, block_size=3).double()
    peer = pml_losses.SubCenterArcFaceLoss(num_classes=classes, embedding_size=dim,
                                           margin=math.degrees(margin), scale=scale).double()
    assert peer.sub_centers == head.sub_centers == 3 and peer.W.shape == (dim, classes * 3)
    with torch.no_grad():
        head.weight.normal_(generator=gen)
        peer.W.copy_(head.weight.T)  # the same class-major layout: column j * K + k
        cos = head.cosine(x)
        assert bool((torch.acos(cos[torch.arange(batch), y]) + margin < math.pi).all())
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, theirs = head.loss(x1, y), peer(x2, y)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(head.weight.grad, peer.W.grad.T, rtol=1e-8, atol=1e-10)


def test_bad_sub_centers_and_weights_are_named():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="sub_centers"):
            SubCenterArcFace(D, C, sub_centers=bad)
    x, w, y = _data(6)
    with pytest.raises(ValueError, match="sub_centers=3 needs a weight of K rows per class"):
        fused_cross_entropy(x, w[:-1], y, LogitSpec("margin", scale=2.0, sub_centers=3))
    with pytest.raises(ValueError, match="sub_centers need kind 'margin'"):
        fused_cross_entropy(x, w, y, LogitSpec("softmax", sub_centers=3))


def test_state_dict_round_trip_and_registry_name():
    head = create_head("subcenter_arcface", D, C, sub_centers=2)
    assert head.weight.shape == (C * 2, D) and head.num_classes == C
    other = create_head("subcenter_arcface", D, C, sub_centers=2)
    other.load_state_dict(copy.deepcopy(head.state_dict()))
    torch.testing.assert_close(other.weight, head.weight)


def test_partial_fc_keeps_or_drops_a_class_with_all_its_sub_centres():
    from marginface.train.sharded_classifier import ShardedClassifier

    x, w, y = _data(7)
    head = SubCenterArcFace(D, C, scale=4.0, block_size=2).double()
    with torch.no_grad():
        head.weight.copy_(w)
    clf = ShardedClassifier(head, rank=0, world_size=1, sample_rate=0.3).train()
    torch.manual_seed(0)
    clf.loss(x, y).backward()
    touched = clf.head.weight.grad.view(C, K, D).abs().sum(2) > 0  # (class, sub-centre)
    kept = touched.any(1)
    assert kept[y].all() and not kept.all()
    full_state = clf.full_state_dict()
    assert full_state["weight"].shape == (C * K, D)


def test_cleaning_finds_dominant_sub_centres_and_far_samples():
    from marginface.heads import subcenter_cleaning

    head = SubCenterArcFace(4, 2, sub_centers=2).double()
    with torch.no_grad():  # class 0: centres e0, e1; class 1: e2, e3
        head.weight.copy_(torch.eye(4, dtype=torch.float64))
    deg = math.radians
    x = torch.tensor([
        [math.cos(deg(10)), 0.0, math.sin(deg(10)), 0.0],   # class 0, near e0: 10 deg
        [math.cos(deg(20)), 0.0, 0.0, math.sin(deg(20))],   # class 0, near e0: 20 deg
        [0.0, 1.0, 0.0, 0.0],                               # class 0, on e1: 90 deg from e0
        [0.0, 0.0, 0.0, 1.0],                               # class 1, on e3 (dominant)
        [0.0, math.sin(deg(80)), 0.0, math.cos(deg(80))],   # class 1: 80 deg from e3
        [0.0, 0.0, 0.5, 3.0],                               # class 1, near e3
    ], dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    found = subcenter_cleaning(head, x, y)
    assert found.dominant.tolist() == [0, 1]
    torch.testing.assert_close(found.angles[:5], torch.tensor([10.0, 20.0, 90.0, 0.0, 80.0],
                                                              dtype=torch.float64))
    assert found.outliers.tolist() == [2, 4]
    torch.testing.assert_close(found.weight, torch.eye(4, dtype=torch.float64)[[0, 3]])
    assert subcenter_cleaning(head, x, y, threshold=85.0).outliers.tolist() == [2]
    with pytest.raises(ValueError, match="threshold"):
        subcenter_cleaning(head, x, y, threshold=200.0)



def test_rows_whose_terms_underflow_are_recomputed_with_a_running_max(monkeypatch):
    """s = 64 and every cosine near -0.7 (target too): each exp(z - s) underflows float32."""
    from marginface.heads.fused import subcenters

    calls = []
    plain = subcenters.subcenter_forward_lse

    def spy(*args, **kwargs):
        calls.append(kwargs.get("shift", args[9] if len(args) > 9 else None))
        return plain(*args, **kwargs)

    monkeypatch.setattr(subcenters, "subcenter_forward_lse", spy)
    gen = torch.Generator().manual_seed(6)
    w = torch.randn(C * K, D, generator=gen, dtype=torch.float64)
    # distinct cosines per sub-centre (amax splits a tie's gradient, the fused path does not)
    w[:, 1:] *= (0.8 + 0.4 * torch.rand(C * K, 1, generator=gen, dtype=torch.float64)) / w[
        :, 1:].norm(dim=1, keepdim=True)
    w[:, 0] = -1.0
    x = torch.zeros(B, D, dtype=torch.float64)
    x[:, 0] = 1.0 + torch.rand(B, generator=gen, dtype=torch.float64)
    y = torch.randint(0, C, (B,), generator=gen)
    head = SubCenterArcFace(D, C, scale=64.0, margin=0.1, sub_centers=K, block_size=2)
    with torch.no_grad():
        head.weight.copy_(w.float())
    xf = x.float().requires_grad_()
    got = head.loss(xf, y)
    got.backward()
    assert None in calls  # the running-max recomputation ran
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    ref = reference(xr, wr, y, scale=64.0, margin=0.1, k=K)
    ref.backward()
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(xf.grad.double(), xr.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(head.weight.grad.double(), wr.grad, rtol=1e-4, atol=1e-6)
