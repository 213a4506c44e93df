"""Seed Caffe layers: gradcheck (float64), phase behaviour, values vs Caffe CPU semantics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd import gradcheck
from torch.func import functional_call

from marginface.caffe.margin_layers import (
    CombinedMargin,
    CosinAddm,
    InnerProduct,
    LabelSpecificAdd,
    MarginInnerProduct,
    Normalize,
    Scale,
    SoftmaxWithLoss,
)
from marginface.functional import sphereface_logits

D = torch.float64


def _cos_matrix(n: int, c: int, low: float = -0.9, high: float = 0.9) -> torch.Tensor:
    return torch.empty(n, c, dtype=D).uniform_(low, high)


# ---------------------------------------------------------------- Normalize
def test_normalize_value_and_gradcheck():
    x = torch.randn(3, 4, 2, 2, dtype=D, requires_grad=True)
    y = Normalize()(x)
    norm = torch.sqrt((x.detach() ** 2).sum(1, keepdim=True) + 1e-6)
    torch.testing.assert_close(y, x.detach() / norm, rtol=0, atol=0)
    assert gradcheck(Normalize(), (x,))
    # Caffe's backward dx = (dy - y <y, dy>) / norm is the true derivative: compare
    dy = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, x, dy)
    ref = (dy - y.detach() * (y.detach() * dy).sum(1, keepdim=True)) / norm
    torch.testing.assert_close(dx, ref)


def test_normalize_rejects_other_types():
    with pytest.raises(ValueError, match="normalize_type"):
        Normalize("L1")


# ---------------------------------------------------------------- InnerProduct
def test_inner_product_plain_matches_linear_and_gradcheck():
    ip = InnerProduct(3, 8, weight_filler={"type": "gaussian", "std": 0.1},
                      bias_filler={"type": "constant", "value": 0.5}).double()
    x = torch.randn(2, 2, 2, 2, dtype=D, requires_grad=True)
    y = ip(x)
    assert y.shape == (2, 3)
    torch.testing.assert_close(y, x.flatten(1) @ ip.weight.T + 0.5)
    w = ip.weight.detach().clone().requires_grad_(True)
    b = ip.bias.detach().clone().requires_grad_(True)
    assert gradcheck(lambda x_, w_, b_: functional_call(ip, {"weight": w_, "bias": b_}, (x_,)),
                     (x, w, b))


def test_inner_product_normalize_value_inplace_write_and_phase():
    ip = InnerProduct(5, 4, bias_term=False, normalize=True).double()
    with torch.no_grad():
        ip.weight.copy_(torch.randn(5, 4, dtype=D) * 3)
    w0 = ip.weight.detach().clone()
    x = torch.randn(6, 4, dtype=D)
    expected_w = w0 / torch.sqrt((w0 ** 2).sum(1, keepdim=True) + 1e-6)
    ip.eval()  # TEST: same value, nothing written
    torch.testing.assert_close(ip(x), x @ expected_w.T, rtol=0, atol=0)
    torch.testing.assert_close(ip.weight.detach(), w0, rtol=0, atol=0)
    ip.train()  # TRAIN: Caffe renormalises the stored rows in place
    torch.testing.assert_close(ip(x), x @ expected_w.T, rtol=0, atol=0)
    torch.testing.assert_close(ip.weight.detach(), expected_w, rtol=0, atol=0)
    # a second forward renormalises again (1e-6 makes the rows a hair shorter than 1)
    ip(x)
    norms = ip.weight.detach().norm(dim=1)
    assert bool((norms < 1).all()) and bool((norms > 1 - 1e-5).all())


def test_inner_product_normalize_gradient_is_true_derivative():
    ip = InnerProduct(5, 4, bias_term=False, normalize=True).double().train()
    w0 = torch.randn(5, 4, dtype=D) * 2
    with torch.no_grad():
        ip.weight.copy_(w0)
    x = torch.randn(6, 4, dtype=D, requires_grad=True)
    dy = torch.randn(6, 5, dtype=D)
    ip(x).backward(dy)  # writes the weight in place; the gradient is in the weight it received
    w = w0.clone().requires_grad_(True)
    ref = (x.detach() @ (w / torch.sqrt((w ** 2).sum(1, keepdim=True) + 1e-6)).T)
    ref.backward(dy)
    torch.testing.assert_close(ip.weight.grad, w.grad)
    ip.eval()
    wv = w0.clone().requires_grad_(True)
    assert gradcheck(lambda x_, w_: functional_call(ip, {"weight": w_}, (x_,)), (x, wv))


def test_inner_product_lazy_axis_and_errors():
    ip = InnerProduct(3, bias_term=False, weight_filler={"type": "xavier"})
    y = ip(torch.randn(2, 4, 5))
    assert ip.weight.shape == (3, 20) and y.shape == (2, 3)
    bound = math.sqrt(3 / 20)
    assert float(ip.weight.detach().abs().max()) <= bound
    ip2 = InnerProduct(3, axis=2)
    assert ip2(torch.randn(2, 4, 5)).shape == (2, 4, 3)
    lazy = InnerProduct(3, bias_term=False)
    lazy.load_state_dict(ip.state_dict())
    assert lazy.weight.shape == (3, 20) and lazy.in_features == 20
    with pytest.raises(ValueError, match="20"):
        ip(torch.randn(2, 7))
    with pytest.raises(ValueError, match="num_output"):
        InnerProduct(0)


# ---------------------------------------------------------------- LabelSpecificAdd
def test_label_specific_add_values_only_above_minus_bias():
    layer = LabelSpecificAdd(bias=-0.35).train()
    cos = torch.tensor([[0.5, 0.9], [0.3, 0.1], [0.2, 0.35], [0.2, 0.36]], dtype=D)
    label = torch.tensor([0.0, 0.0, 1.0, 1.0])  # Caffe's float labels
    out = layer(cos, label)
    expected = cos.clone()
    expected[0, 0] = 0.5 - 0.35  # 0.5 > 0.35: margin added
    expected[3, 1] = 0.36 - 0.35  # just above
    # rows 1 (0.3) and 2 (0.35, not strictly greater) stay unchanged
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_label_specific_add_phase_and_transform_test():
    cos = _cos_matrix(4, 3, 0.5, 0.9)
    label = torch.tensor([0, 1, 2, 0])
    for transform_test in (False, True):
        layer = LabelSpecificAdd(bias=-0.35, transform_test=transform_test).eval()
        torch.testing.assert_close(layer(cos, label), cos, rtol=0, atol=0)
    assert not torch.equal(LabelSpecificAdd(bias=-0.35).train()(cos, label), cos)


def test_label_specific_add_gradcheck_identity_gradient():
    cos = _cos_matrix(5, 4, 0.4, 0.9).requires_grad_(True)  # away from the jump at 0.35
    label = torch.tensor([0, 1, 2, 3, 0])
    layer = LabelSpecificAdd(bias=-0.35).train()
    assert gradcheck(lambda c: layer(c, label), (cos,))
    (g,) = torch.autograd.grad(layer(cos, label).sum(), cos)
    torch.testing.assert_close(g, torch.ones_like(g))


def test_label_specific_add_annealing_schedule_and_state():
    layer = LabelSpecificAdd(bias_base=-0.5, bias_gamma=0.1, bias_power=0.5, bias_min=-0.45,
                             bias_max=-0.1, num_tops=2).train()
    cos = torch.full((2, 3), 0.9, dtype=D)
    label = torch.tensor([0, 2])
    seen = []
    for it in range(4):
        out, bias = layer(cos, label)
        raw = -0.5 + (1 + 0.1 * it) ** 0.5 - 1
        want = min(max(raw, -0.45), -0.1)
        assert float(bias) == pytest.approx(want, abs=1e-15)
        assert float(out[0, 0]) == pytest.approx(0.9 + want, abs=1e-15)
        seen.append(float(bias))
    assert seen[0] == -0.45  # clamped at bias_min while the raw value is below it
    assert int(layer.iteration) == 4 and "iteration" in layer.state_dict()
    layer.eval()
    out, _ = layer(cos, label)
    assert int(layer.iteration) == 4 and torch.equal(out, cos)


def test_label_specific_add_bad_labels():
    layer = LabelSpecificAdd(-0.35)
    with pytest.raises(ValueError, match=r"label\[1\] = 5"):
        layer(torch.zeros(2, 3), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="whole number"):
        layer(torch.zeros(2, 3), torch.tensor([0.0, 1.5]))
    with pytest.raises(ValueError, match="3 entries"):
        layer(torch.zeros(2, 3), torch.tensor([0, 1, 2]))


# ---------------------------------------------------------------- CosinAddm
def test_cosin_add_m_branches_by_hand():
    m = 0.5
    layer = CosinAddm(m=m)
    threshold = math.cos(math.pi - m)
    cos = torch.tensor([[0.6, 0.1], [-0.95, 0.2], [threshold, 0.0], [1.0 + 1e-9, 0.3],
                        [0.2, 0.7]], dtype=D)
    label = torch.tensor([0, 0, 0, 0, 1])
    out = layer(cos, label)
    expected = cos.clone()
    expected[0, 0] = math.cos(math.acos(0.6) + m)
    expected[1, 0] = -0.95 - m * math.sin(m)  # fallback branch
    expected[2, 0] = threshold - m * math.sin(m)  # <= threshold is the fallback
    expected[3, 0] = math.cos(m)  # clamped to 1
    expected[4, 1] = 0.7 * math.cos(m) - math.sqrt(1 - 0.49) * math.sin(m)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-15)


def test_cosin_add_m_applies_in_test_phase_too():
    cos = _cos_matrix(3, 4)
    label = torch.tensor([1, 2, 3])
    train = CosinAddm(0.5).train()(cos, label)
    test = CosinAddm(0.5, transform_test=False).eval()(cos, label)
    torch.testing.assert_close(train, test, rtol=0, atol=0)
    assert not torch.equal(test, cos)


def test_cosin_add_m_gradients():
    m = 0.5
    layer = CosinAddm(m)
    cos = torch.tensor([[0.6, 0.1], [-0.95, 0.2], [0.3, -0.5], [0.1, 0.99]], dtype=D,
                       requires_grad=True)
    label = torch.tensor([0, 0, 1, 1])
    assert gradcheck(lambda c: layer(c, label), (cos,))
    (g,) = torch.autograd.grad(layer(cos, label).sum(), cos)
    s = math.sqrt(1 - 0.36)
    assert float(g[0, 0]) == pytest.approx(math.cos(m) + math.sin(m) * 0.6 / s)
    assert float(g[1, 0]) == 1.0  # fallback branch
    assert float(g[0, 1]) == 1.0  # non-target entries pass through
    # cos = 1 exactly and above: finite, never NaN
    edge = torch.tensor([[1.0, 0.0], [1.0 + 1e-7, 0.0], [-1.0, 0.0]], dtype=D,
                        requires_grad=True)
    (ge,) = torch.autograd.grad(layer(edge, torch.tensor([0, 0, 0])).sum(), edge)
    assert bool(torch.isfinite(ge).all())
    assert float(ge[1, 0]) == 0.0


# ---------------------------------------------------------------- CombinedMargin
def test_combined_margin_values_negative_labels_and_no_extension():
    layer = CombinedMargin(1.0, 0.3, 0.2)
    cos = torch.tensor([[0.5, 0.1], [-0.99, 0.4], [0.3, 0.2]], dtype=D)
    label = torch.tensor([0.0, 0.0, -1.0])
    out = layer(cos, label)
    expected = cos.clone()
    expected[0, 0] = math.cos(math.acos(0.5) + 0.3) - 0.2
    # theta + m2 > pi: Caffe's CPU value cos(.) - m3, not monotone (no psi extension)
    expected[1, 0] = math.cos(math.acos(-0.99) + 0.3) - 0.2
    assert math.acos(-0.99) + 0.3 > math.pi
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-15)  # row 2 skipped (label -1)
    torch.testing.assert_close(CombinedMargin(1.0, 0.3, 0.2).eval()(cos, label), out)


def test_combined_margin_gradcheck_and_formula():
    layer = CombinedMargin(1.35, 0.3, 0.2)
    cos = _cos_matrix(5, 3).requires_grad_(True)
    label = torch.tensor([0, 1, 2, -1, 1])
    assert gradcheck(lambda c: layer(c, label), (cos,))
    (g,) = torch.autograd.grad(layer(cos, label).sum(), cos)
    c = float(cos.detach()[0, 0])
    t = math.acos(c)
    assert float(g[0, 0]) == pytest.approx(1.35 * math.sin(1.35 * t + 0.3) / math.sin(t))
    assert float(g[3, 0]) == 1.0  # skipped row passes through
    edge = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=D, requires_grad=True)
    (ge,) = torch.autograd.grad(CombinedMargin()(edge, torch.tensor([0, 0])).sum(), edge)
    assert bool(torch.isfinite(ge).all())


@settings(max_examples=40, deadline=None)
@given(c=st.floats(-1.0, 1.0), m=st.floats(0.0, 1.5))
def test_margin_layers_never_nan(c, m):
    cos = torch.tensor([[c, 0.0]], dtype=torch.float32, requires_grad=True)
    label = torch.tensor([0])
    for layer in (CosinAddm(m), CombinedMargin(1.0, m, 0.1), CombinedMargin(2.0, m, 0.0)):
        out = layer(cos, label)
        (g,) = torch.autograd.grad(out.sum(), cos)
        assert bool(torch.isfinite(out).all()) and bool(torch.isfinite(g).all())


# ---------------------------------------------------------------- Scale
def test_scale_fixed_per_class_blob_like_caffe():
    s = Scale(filler={"type": "constant", "value": 30}, learnable=False)
    x = torch.randn(4, 7, dtype=D)
    y = s(x)
    assert s.weight.shape == (7,) and not s.weight.requires_grad
    torch.testing.assert_close(y, 30 * x, rtol=0, atol=0)
    assert s.blob_names == ["weight"]


def test_scale_axes_bias_two_bottoms_and_gradcheck():
    x = torch.randn(2, 3, 4, 5, dtype=D, requires_grad=True)
    s = Scale(axis=1, num_axes=2, bias_term=True, filler={"type": "uniform", "min": 1, "max": 2},
              bias_filler={"type": "constant", "value": 0.25}).double()
    y = s(x)
    assert s.weight.shape == (3, 4) and s.bias.shape == (3, 4)
    torch.testing.assert_close(y, x * s.weight[None, :, :, None] + 0.25)
    w, b = s.weight.detach().clone().requires_grad_(), s.bias.detach().clone().requires_grad_()
    assert gradcheck(lambda x_, w_, b_: functional_call(s, {"weight": w_, "bias": b_}, (x_,)),
                     (x, w, b))
    two = Scale(axis=0, num_bottoms=2, bias_term=True).double()
    factor = torch.randn(2, 3, dtype=D, requires_grad=True)
    out = two(x, factor)
    assert two.blob_names == ["bias"] and two.bias.shape == (2, 3)
    torch.testing.assert_close(out, x * factor[:, :, None, None])
    assert gradcheck(lambda x_, f_: two(x_, f_), (x, factor))
    scalar = Scale(num_axes=0, scale_shape=())
    assert torch.equal(scalar(torch.ones(2, 3)), torch.ones(2, 3))
    with pytest.raises(ValueError, match="does not match"):
        two(x, torch.randn(3, 3, dtype=D))
    with pytest.raises(ValueError, match="built for 2"):
        two(x)


# ---------------------------------------------------------------- SoftmaxWithLoss
def test_softmax_with_loss_by_hand_and_normalizations():
    z = torch.tensor([[1.0, 2.0, 0.5], [0.1, -1.0, 3.0], [2.0, 2.0, 2.0]], dtype=D)
    label = torch.tensor([1.0, 2.0, 0.0])
    nll = []
    for row, y in zip(z.tolist(), [1, 2, 0], strict=True):
        nll.append(-(row[y] - math.log(sum(math.exp(v) for v in row))))
    assert float(SoftmaxWithLoss()(z, label)) == pytest.approx(sum(nll) / 3)
    ignored = SoftmaxWithLoss(ignore_label=2)
    assert float(ignored(z, label)) == pytest.approx((nll[0] + nll[2]) / 2)  # VALID: 2 counted
    full = SoftmaxWithLoss(ignore_label=2, normalization="FULL")
    assert float(full(z, label)) == pytest.approx((nll[0] + nll[2]) / 3)
    none = SoftmaxWithLoss(normalization="NONE")
    assert float(none(z, label)) == pytest.approx(sum(nll))
    assert float(SoftmaxWithLoss(normalize=False)(z, label)) == pytest.approx(sum(nll) / 3)
    all_ignored = SoftmaxWithLoss(ignore_label=7)(z[:1], torch.tensor([7]))
    assert float(all_ignored) == 0.0  # the normaliser is at least 1
    loss, prob = SoftmaxWithLoss(num_tops=2)(z, label)
    torch.testing.assert_close(prob, torch.softmax(z, 1))


def test_softmax_with_loss_spatial_flt_min_gradcheck_and_errors():
    z = torch.randn(2, 4, 3, dtype=D, requires_grad=True)  # inner = 3 positions
    label = torch.randint(0, 4, (2, 3))
    layer = SoftmaxWithLoss()
    ref = F.cross_entropy(z, label)
    torch.testing.assert_close(layer(z, label), ref)
    assert gradcheck(lambda z_: layer(z_, label), (z,))
    huge = torch.tensor([[0.0, 200.0]], dtype=D)  # p(label 0) = e^-200 < FLT_MIN
    assert float(layer(huge, torch.tensor([0]))) == pytest.approx(-math.log(1.1754943508e-38))
    with pytest.raises(ValueError, match=r"label\[0\] = 4"):
        layer(z, torch.full((2, 3), 4))
    with pytest.raises(ValueError, match="normalization"):
        SoftmaxWithLoss(normalization="MEAN")


# ---------------------------------------------------------------- MarginInnerProduct
@pytest.mark.parametrize("kind,m", [("SINGLE", 1), ("DOUBLE", 2), ("TRIPLE", 3),
                                    ("QUADRUPLE", 4)])
def test_margin_inner_product_matches_psi_and_lambda(kind, m):
    layer = MarginInnerProduct(7, 5, type=kind, base=1000, gamma=0.12, power=1, lambda_min=5,
                               weight_filler={"type": "xavier"}).double().train()
    w0 = layer.weight.detach().clone()
    x = torch.randn(9, 5, dtype=D) * 3
    label = torch.randint(0, 7, (9,))
    out, lam = layer(x, label)
    want_lam = max(1000 / (1 + 0.12 * 1), 5)  # iteration advanced to 1 before lambda
    assert float(lam) == pytest.approx(want_lam)
    if m == 1:
        expected = x @ F.normalize(w0, dim=1).T
    else:
        expected = sphereface_logits(x, w0, label, m=m, lambda_=want_lam)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(layer.weight.detach(), F.normalize(w0, dim=1))
    assert int(layer.iteration) == 1
    for _ in range(3):
        layer(x, label)
    _, lam = layer(x, label)
    assert float(lam) == pytest.approx(max(1000 / (1 + 0.12 * 5), 5))
    layer.eval()
    _, lam_eval = layer(x, label)
    assert int(layer.iteration) == 5 and float(lam_eval) == pytest.approx(1000 / (1 + 0.12 * 6))


def test_margin_inner_product_lambda_floor_and_gradcheck():
    layer = MarginInnerProduct(4, 3, type="QUADRUPLE", base=1000, gamma=0.12, power=1,
                               lambda_min=5, iteration=100000).double().eval()
    x = torch.randn(5, 3, dtype=D, requires_grad=True)
    label = torch.tensor([0, 1, 2, 3, 0])
    _, lam = layer(x, label)
    assert float(lam) == 5.0
    w = torch.randn(4, 3, dtype=D, requires_grad=True)
    assert gradcheck(lambda x_, w_: functional_call(layer, {"weight": w_}, (x_, label))[0],
                     (x, w))
    with pytest.raises(ValueError, match="type"):
        MarginInnerProduct(4, type="QUINTUPLE")
    with pytest.raises(ValueError, match=r"label\[0\] = 9"):
        layer(x, torch.tensor([9, 0, 0, 0, 0]))


def test_normalize_fields_and_second_top():
    x = torch.randn(3, 5, dtype=D)
    y, norm = Normalize(fix_gradient=True, bp_norm=True, num_tops=2)(x)
    torch.testing.assert_close(norm, torch.sqrt((x ** 2).sum(1, keepdim=True) + 1e-6))
    torch.testing.assert_close(y, x / norm)


def test_blob_names_in_caffe_order():
    assert InnerProduct(3, 4).blob_names == ["weight", "bias"]
    assert InnerProduct(3, 4, bias_term=False).blob_names == ["weight"]
    assert MarginInnerProduct(3, 4).blob_names == ["weight"]


@settings(max_examples=50, deadline=None)
@given(m1=st.floats(0.5, 2.0), m2=st.floats(0.0, 1.0), m3=st.floats(0.0, 0.5),
       s=st.floats(1.0, 64.0), frac=st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4),
       seed=st.integers(0, 1000))
def test_margin_layers_agree_with_functional_where_defined(m1, m2, m3, s, frac, seed):
    """Where m1*theta_y + m2 <= pi, Caffe's margin layers + Scale equal functional.apply_margin."""
    from marginface.functional import apply_margin

    g = torch.Generator().manual_seed(seed)
    cos = torch.empty(4, 6, dtype=D).uniform_(-1, 1, generator=g)
    label = torch.randint(0, 6, (4,), generator=g)
    theta_y = torch.tensor(frac, dtype=D) * (math.pi - m2) / m1
    theta_y = theta_y.clamp(1e-3, math.pi - 1e-3)
    cos[torch.arange(4), label] = torch.cos(theta_y)
    scale = Scale(filler={"type": "constant", "value": s}, learnable=False).double()
    caffe = scale(CombinedMargin(m1, m2, m3)(cos, label))
    torch.testing.assert_close(caffe, apply_margin(cos, label, scale=s, m1=m1, m2=m2, m3=m3),
                               rtol=1e-12, atol=1e-12)
    # CosinAddm (ArcFace) on the rows where theta_y + m2 < pi (elsewhere Caffe's fallback)
    arc = scale(CosinAddm(m2)(cos, label))
    ref = apply_margin(cos, label, scale=s, m2=m2)
    ok = cos[torch.arange(4), label] > math.cos(math.pi - m2)
    torch.testing.assert_close(arc[ok], ref[ok], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_margin_inner_product_finite_at_the_edges(dtype, m):
    """x = 0, x parallel / antiparallel to its class row (cos = +-1), a zero weight row."""
    layer = MarginInnerProduct(3, 4, type=m, base=10, lambda_min=1).to(dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(3, 4, dtype=dtype))
        layer.weight[2] = 0
    x = torch.tensor([[0.0, 0, 0, 0], [2.0, 0, 0, 0], [-3.0, 0, 0, 0], [0, 1, 0, 0]],
                     dtype=dtype, requires_grad=True)
    out, _ = layer(x, torch.tensor([0, 0, 0, 2]))
    gx, gw = torch.autograd.grad(out.sum(), (x, layer.weight))
    for t in (out, gx, gw):
        assert bool(torch.isfinite(t).all())
    out = out.detach()
    assert float(out[0].abs().max()) == 0.0  # a zero input row: zero logits
    assert float(out[:3, 2].abs().max()) == 0.0  # a zero class row: cos = 0 for the others
