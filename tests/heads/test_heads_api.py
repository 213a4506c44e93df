"""Constructors, paper defaults, parameter and input validation, train/eval behaviour."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from heads_cases import (
    ADAPTIVE_KINDS,
    BINARY_KINDS,
    HEAD_FACTORIES,
    make_head,
    single_thread,  # noqa: F401  (autouse fixture)
)

from marginface import functional as MF
from marginface.heads import (
    AMSoftmax,
    ArcFace,
    CombinedMargin,
    CosFace,
    Head,
    MarginHead,
    NormFace,
    Softmax,
    SphereFace,
)


def test_paper_defaults_and_attributes():
    cos = CosFace(4, 3)
    assert (cos.scale, cos.margin, cos.m1, cos.m2, cos.m3) == (64.0, 0.35, 1.0, 0.0, 0.35)
    arc = ArcFace(4, 3)
    assert (arc.scale, arc.margin, arc.m1, arc.m2, arc.m3) == (64.0, 0.5, 1.0, 0.5, 0.0)
    comb = CombinedMargin(4, 3)
    assert (comb.scale, comb.m1, comb.m2, comb.m3) == (64.0, 1.0, 0.3, 0.2)
    norm = NormFace(4, 3)
    assert (norm.scale, norm.m1, norm.m2, norm.m3) == (16.0, 1.0, 0.0, 0.0)
    sph = SphereFace(4, 3)
    assert (sph.m, sph.base, sph.gamma, sph.power, sph.lambda_min) == (4, 1000.0, 0.12, 1.0, 5.0)
    assert int(sph.iteration) == 0 and sph.iteration.dtype == torch.int64
    assert AMSoftmax is CosFace
    for head in (cos, arc, comb, norm):
        assert isinstance(head, MarginHead) and head.detach_margin is False
    for head in (cos, arc, comb, norm, sph, Softmax(4, 3)):
        assert isinstance(head, Head)
        assert head.weight.shape == (3, 4)
        assert head.block_size is None and head.matmul_dtype == torch.float32
    assert Softmax(4, 3).bias.shape == (3,)
    assert CombinedMargin(4, 3, m1=1.35, m2=0.0, m3=0.0).m1 == 1.35
    assert CombinedMargin(4, 3, block_size=128, matmul_dtype=torch.bfloat16).block_size == 128


BAD_PARAMETERS = [
    (lambda: CosFace(4, 3, scale=0.0), "scale", "0.0"),
    (lambda: ArcFace(4, 3, scale=-2.0), "scale", "-2.0"),
    (lambda: NormFace(4, 3, scale=float("inf")), "scale", "inf"),
    (lambda: CombinedMargin(4, 3, m1=0.0), "m1", "0.0"),
    (lambda: CombinedMargin(4, 3, m1=-1.35), "m1", "-1.35"),
    (lambda: CombinedMargin(4, 3, m2=-0.1), "m2", "-0.1"),
    (lambda: CombinedMargin(4, 3, m2=math.pi), "m2", "3.14159"),
    (lambda: CombinedMargin(4, 3, m3=-0.2), "m3", "-0.2"),
    (lambda: ArcFace(4, 3, margin=4.0), "margin", "4.0"),
    (lambda: ArcFace(4, 3, margin=-0.5), "margin", "-0.5"),
    (lambda: CosFace(4, 3, margin=-0.35), "margin", "-0.35"),
    (lambda: CosFace(4, 3, margin=float("nan")), "margin", "nan"),
    (lambda: SphereFace(4, 3, m=0), "m", "0"),
    (lambda: SphereFace(4, 3, m=5), "m", "5"),
    (lambda: SphereFace(4, 3, m=2.0), "m", "2.0"),
    (lambda: SphereFace(4, 3, m=True), "m", "True"),
    (lambda: SphereFace(4, 3, base=-1.0), "base", "-1.0"),
    (lambda: SphereFace(4, 3, gamma=float("nan")), "gamma", "nan"),
    (lambda: SphereFace(4, 3, power=-1.0), "power", "-1.0"),
    (lambda: SphereFace(4, 3, lambda_min=-5.0), "lambda_min", "-5.0"),
    (lambda: SphereFace(4, 3, iteration=-1), "iteration", "-1"),
    (lambda: NormFace(0, 3), "embedding_dim", "0"),
    (lambda: NormFace(2.5, 3), "embedding_dim", "2.5"),
    (lambda: Softmax(4, -3), "num_classes", "-3"),
    (lambda: SphereFace(4, 0), "num_classes", "0"),
    (lambda: ArcFace(4, 3, block_size=0), "block_size", "0"),
    (lambda: ArcFace(4, 3, matmul_dtype=torch.int32), "matmul_dtype", "int32"),
    (lambda: ArcFace(4, 3, detach_margin="yes"), "detach_margin", "yes"),
]


@pytest.mark.parametrize("build,name,value", BAD_PARAMETERS)
def test_bad_parameters_raise_naming_argument_and_value(build, name, value):
    with pytest.raises(ValueError) as info:
        build()
    message = str(info.value)
    assert message.startswith(name + " ") and value in message, message


def _nan_at(row: int, value: float = float("nan")) -> torch.Tensor:
    x = torch.randn(4, 6)
    x[row, 3] = value
    return x


BAD_INPUTS = [
    (torch.randn(4, 6), torch.tensor([0, 1, 5, 2]), r"labels\[2\] = 5 .*num_classes=5"),
    (torch.randn(4, 6), torch.tensor([0, -1, 1, 2]), r"labels\[1\] = -1"),
    (torch.randn(4, 6), torch.tensor([0.0, 1.0, 1.0, 2.0]), r"labels .*integer.*float32"),
    (torch.randn(4, 6), torch.tensor([True, False, True, True]), r"labels .*integer.*bool"),
    (torch.randn(4, 6), torch.tensor([[0, 1, 1, 2]]), r"labels .*1-D.*\(1, 4\)"),
    (torch.randn(4, 6), torch.tensor([0, 1, 2]), r"labels has 3 entries .*4 rows"),
    (torch.randn(4, 7), torch.tensor([0, 1, 2, 3]), r"embeddings .*\(batch, 6\).*\(4, 7\)"),
    (torch.randn(6), torch.tensor([0]), r"embeddings .*\(batch, 6\).*\(6,\)"),
    (torch.ones(4, 6, dtype=torch.int64), torch.tensor([0, 1, 2, 3]), r"embeddings .*int64"),
    (_nan_at(2), torch.tensor([0, 1, 2, 3]), r"embeddings .*NaN or inf .*row 2"),
    (_nan_at(3, float("inf")), torch.tensor([0, 1, 2, 3]), r"embeddings .*NaN or inf .*row 3"),
    ([[0.0] * 6], torch.tensor([0]), r"embeddings must be a torch.Tensor, got list"),
    (torch.randn(1, 6), [0], r"labels must be a torch.Tensor, got list"),
]


@pytest.mark.parametrize("name", list(HEAD_FACTORIES))
@pytest.mark.parametrize("embeddings,labels,match", BAD_INPUTS)
def test_bad_inputs_raise_in_forward_loss_and_unfused_loss(name, embeddings, labels, match):
    head = make_head(name, dtype=torch.float32).train()
    for call in (head, head.loss, head.unfused_loss):
        with pytest.raises(ValueError, match=match):
            call(embeddings, labels)
    head.eval()
    with pytest.raises(ValueError, match=match):
        head(embeddings, labels)
    if isinstance(head, SphereFace):
        assert int(head.iteration) == 0, "a rejected call must not advance the schedule"


@pytest.mark.parametrize("name", list(HEAD_FACTORIES))
def test_loss_needs_labels_and_a_non_empty_batch(name):
    head = make_head(name, dtype=torch.float32)
    with pytest.raises(ValueError, match="labels are required"):
        head.loss(torch.randn(2, 6), None)
    with pytest.raises(ValueError, match="0 rows"):
        head.loss(torch.randn(0, 6), torch.zeros(0, dtype=torch.long))
    assert head(torch.randn(0, 6)).shape == (0, 5)


@pytest.mark.parametrize("name", [n for n in HEAD_FACTORIES
                                  if n not in ("softmax", *ADAPTIVE_KINDS, *BINARY_KINDS)])
def test_train_mode_applies_margin_only_with_labels_eval_never(name):
    head = make_head(name)
    emb = torch.randn(8, 6, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    weight = head.weight.detach()
    if isinstance(head, SphereFace):
        plain = MF.cosine_similarity_matrix(emb, weight) * emb.norm(dim=1, keepdim=True)
    else:
        # sub-centre heads: the nearest of each class's rows_per_class rows
        plain = head.scale * MF.cosine_similarity_matrix(emb, weight).view(
            8, 5, head.rows_per_class).amax(2)
    head.train()
    margin = head(emb, labels)
    torch.testing.assert_close(head(emb), plain)
    head.eval()
    torch.testing.assert_close(head(emb, labels), plain)
    torch.testing.assert_close(head(emb), plain)
    target = torch.zeros_like(plain, dtype=torch.bool)
    target[torch.arange(8), labels] = True
    torch.testing.assert_close(margin[~target], plain[~target])
    if name == "normface":
        torch.testing.assert_close(margin, plain)
    else:
        assert bool((margin[target] < plain[target]).all()), "a margin lowers every target logit"
    if not isinstance(head, SphereFace):
        # loss always applies the margin, in eval mode too, and equals CE of the margin logits
        expected = F.cross_entropy(margin, labels)
        torch.testing.assert_close(head.loss(emb, labels), expected)
        torch.testing.assert_close(head.unfused_loss(emb, labels), expected)
        head.train()
        torch.testing.assert_close(head.loss(emb, labels), expected)


def test_softmax_is_a_linear_layer_with_bias_and_ignores_labels():
    head = make_head("softmax")
    with torch.no_grad():
        head.bias.normal_()
    emb = torch.randn(5, 6, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 4])
    expected = F.linear(emb, head.weight, head.bias)
    torch.testing.assert_close(head.train()(emb, labels), expected)
    torch.testing.assert_close(head.eval()(emb), expected)
    torch.testing.assert_close(head.loss(emb, labels), F.cross_entropy(expected, labels))


def test_sphereface_iteration_advances_once_per_training_call_with_labels():
    head = make_head("sphereface")
    emb, labels = torch.randn(3, 6, dtype=torch.float64), torch.tensor([0, 1, 2])
    head.train()
    head(emb)  # no labels: no margin, no step
    assert int(head.iteration) == 0
    head(emb, labels)
    head.loss(emb, labels)
    head.unfused_loss(emb, labels)
    assert int(head.iteration) == 3
    head.eval()
    head(emb, labels)
    head.loss(emb, labels)
    assert int(head.iteration) == 3


def test_sphereface_lambda_schedule_values_and_use():
    head = make_head("sphereface").train()
    assert head.current_lambda() == 1000.0  # iteration 0
    emb, labels = torch.randn(4, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 3])
    out = head(emb, labels)  # Caffe: iter += 1 first, so this call uses lambda(1)
    lam1 = 1000.0 / 1.12
    assert head.current_lambda() == pytest.approx(lam1)
    expected = MF.sphereface_logits(emb, head.weight, labels, m=4, lambda_=lam1)
    torch.testing.assert_close(out, expected)
    for iteration, lam in [(10, 1000 / 2.2), (100, 1000 / 13.0), (1658, 1000 / (1 + 0.12 * 1658)),
                           (1659, 5.0), (10**6, 5.0)]:
        head.iteration.fill_(iteration)
        assert head.current_lambda() == pytest.approx(max(lam, 5.0))
    custom = SphereFace(4, 3, base=10.0, gamma=1.0, power=2.0, lambda_min=0.5, iteration=1)
    assert custom.current_lambda() == pytest.approx(10.0 / 4.0)
    custom.iteration.fill_(9)
    assert custom.current_lambda() == pytest.approx(0.5)  # 10/100 = 0.1 < lambda_min


def test_sphereface_iteration_state_dict_round_trip():
    head = make_head("sphereface").train()
    emb, labels = torch.randn(4, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 3])
    for _ in range(7):
        head.loss(emb, labels)
    state = head.state_dict()
    assert set(state) == {"weight", "iteration"} and int(state["iteration"]) == 7
    fresh = make_head("sphereface")
    fresh.load_state_dict(state)
    assert int(fresh.iteration) == 7
    assert fresh.current_lambda() == head.current_lambda() == pytest.approx(1000 / 1.84)
    restored = SphereFace(6, 5, iteration=7)
    assert restored.current_lambda() == head.current_lambda() == pytest.approx(1000 / 1.84)
    torch.testing.assert_close(fresh.train()(emb, labels), head(emb, labels))  # both at 8 now


@pytest.mark.parametrize("name", list(HEAD_FACTORIES))
@pytest.mark.parametrize("matmul_dtype", [torch.bfloat16, torch.float16])
def test_low_precision_matmul_is_close_to_float32(name, matmul_dtype):
    ref = make_head(name, dtype=torch.float32, iteration=5000) if name == "sphereface" else \
        make_head(name, dtype=torch.float32)
    low = HEAD_FACTORIES[name](6, 5, matmul_dtype=matmul_dtype)
    low.load_state_dict(ref.state_dict())
    ref.eval(), low.eval()
    emb, labels = torch.randn(16, 6), torch.randint(0, 5, (16,))
    out = low(emb, labels).detach()
    assert out.dtype == torch.float32
    scale = ref(emb).detach().abs().max()
    tol = 2e-2 if matmul_dtype == torch.bfloat16 else 4e-3
    assert float((out - ref(emb).detach()).abs().max()) <= tol * float(scale)
    torch.testing.assert_close(low.loss(emb, labels), ref.loss(emb, labels), rtol=0.05, atol=0.05)


@pytest.mark.parametrize("name", [n for n in HEAD_FACTORIES
                                  if n not in ("softmax", *ADAPTIVE_KINDS, *BINARY_KINDS)])
def test_target_logit_method_matches_the_training_forward(name):
    from heads_cases import basis_weight, rotation_embeddings

    head = make_head(name, iteration=40) if name == "sphereface" else make_head(name)
    with torch.no_grad():
        head.weight.copy_(basis_weight(5, 6).repeat_interleave(head.rows_per_class, 0))
    theta = torch.linspace(0.0, math.pi, 50, dtype=torch.float64)
    out = head.train()(rotation_embeddings(theta, 6), torch.zeros(50, dtype=torch.long))[:, 0]
    # the training call advanced SphereFace to iteration 41; target_logit uses the same lambda
    torch.testing.assert_close(head.target_logit(torch.cos(theta)), out)
