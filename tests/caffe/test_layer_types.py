"""Caffe layer semantics of the net's own modules, against independent hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from marginface.caffe.fillers import fill
from marginface.caffe.layer_types import LAYER_TYPES
from marginface.caffe.prototxt import parse_prototxt


def build(text: str, phase: str = "TRAIN", shapes=None):
    layer = parse_prototxt(text)
    module = LAYER_TYPES[str(layer.get("type"))](layer, phase)
    if shapes is not None:
        module.ensure_ready(shapes)
    return module


def caffe_pool_reference(x, kernel, stride, pad, method):
    """Caffe's CPU pooling loops, written out (pooling_layer.cpp semantics)."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    oh = int(math.ceil((h + 2 * ph - kh) / sh)) + 1
    ow = int(math.ceil((w + 2 * pw - kw) / sw)) + 1
    if ph or pw:
        if (oh - 1) * sh >= h + ph:
            oh -= 1
        if (ow - 1) * sw >= w + pw:
            ow -= 1
    out = torch.zeros(n, c, oh, ow, dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * sh - ph, j * sw - pw
            he, we = min(hs + kh, h + ph), min(ws + kw, w + pw)
            size = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            window = x[:, :, hs:he, ws:we]
            if method == "MAX":
                out[:, :, i, j] = window.amax(dim=(2, 3))
            else:
                out[:, :, i, j] = window.sum(dim=(2, 3)) / size
    return out


@settings(max_examples=60, deadline=None)
@given(h=st.integers(3, 12), w=st.integers(3, 12), k=st.integers(1, 4), s=st.integers(1, 3),
       p=st.integers(0, 2), method=st.sampled_from(["MAX", "AVE"]))
def test_pooling_matches_caffe_loops(h, w, k, s, p, method):
    if p >= k or s > k or k > h + 2 * p or k > w + 2 * p:  # Caffe nets pool with s <= k
        return
    layer = build(f'name: "p" type: "Pooling" pooling_param {{ pool: {method} kernel_size: {k} '
                  f'stride: {s} pad: {p} }}')
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    (y,) = layer(x)
    expected = caffe_pool_reference(x, (k, k), (s, s), (p, p), method)
    assert tuple(y.shape) == tuple(expected.shape) == layer.out_shapes([tuple(x.shape)])[0]
    torch.testing.assert_close(y, expected)


def test_pooling_ceil_rounding_and_global():
    # MTCNN R-Net: 22x22, kernel 3 stride 2 -> Caffe gives 11 (floor rounding would give 10)
    layer = build('name: "p" type: "Pooling" pooling_param { pool: MAX kernel_size: 3 stride: 2 }')
    assert layer(torch.randn(1, 2, 22, 22))[0].shape[-2:] == (11, 11)
    g = build('name: "g" type: "Pooling" pooling_param { pool: AVE global_pooling: true }')
    x = torch.randn(2, 3, 5, 4)
    torch.testing.assert_close(g(x)[0], x.mean(dim=(2, 3), keepdim=True))
    with pytest.raises(ValueError, match="'p2'.*STOCHASTIC"):
        build('name: "p2" type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 2 }')


def test_convolution_geometry_and_blobs():
    layer = build('name: "c" type: "Convolution" convolution_param { num_output: 6 group: 2 '
                  'kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0 '
                  'dilation: 2 weight_filler { type: "gaussian" std: 0.1 } }',
                  shapes=[(1, 4, 9, 7)])
    weight, bias = layer.caffe_blobs()
    assert weight.shape == (6, 2, 3, 2) and bias.shape == (6,)
    assert torch.count_nonzero(bias) == 0  # Caffe's default bias filler: constant 0
    x = torch.randn(1, 4, 9, 7)
    (y,) = layer(x)
    expected = torch.nn.functional.conv2d(x, weight, bias, (2, 1), (1, 0), 2, 2)
    torch.testing.assert_close(y, expected)
    assert tuple(y.shape) == layer.out_shapes([(1, 4, 9, 7)])[0] == (1, 6, 4, 5)
    dw = build('name: "dw" type: "DepthwiseConvolution" convolution_param { num_output: 4 '
               'kernel_size: 3 bias_term: false }', shapes=[(1, 4, 5, 5)])
    assert [b.shape for b in dw.caffe_blobs()] == [(4, 1, 3, 3)]
    with pytest.raises(ValueError, match="'c2'.*group 3"):
        build('name: "c2" type: "Convolution" convolution_param { num_output: 6 group: 3 '
              'kernel_size: 1 }', shapes=[(1, 4, 5, 5)])


def test_batchnorm_caffe_running_sums_and_global_stats():
    text = 'name: "bn" type: "BatchNorm" batch_norm_param { moving_average_fraction: 0.9 }'
    bn = build(text, "TRAIN", shapes=[(4, 3, 2, 2)])
    x1, x2 = torch.randn(4, 3, 2, 2) * 2 + 1, torch.randn(4, 3, 2, 2)
    (y,) = bn(x1)
    mu = x1.mean(dim=(0, 2, 3))
    var = x1.var(dim=(0, 2, 3), unbiased=False)
    torch.testing.assert_close(y, (x1 - mu.view(1, 3, 1, 1)) / torch.sqrt(var.view(1, 3, 1, 1)
                                                                           + 1e-5))
    bn(x2)
    m = 16
    mean_sum = 0.9 * mu + x2.mean(dim=(0, 2, 3))
    var_sum = 0.9 * var * m / (m - 1) + x2.var(dim=(0, 2, 3), unbiased=True)
    mean_blob, var_blob, factor = bn.caffe_blobs()
    torch.testing.assert_close(factor, torch.tensor([1.9]))
    torch.testing.assert_close(mean_blob, mean_sum)
    torch.testing.assert_close(var_blob, var_sum)
    test = build('name: "bn" type: "BatchNorm"', "TEST", shapes=[(4, 3, 2, 2)])
    for target, source in zip(test.caffe_blobs(), bn.caffe_blobs(), strict=True):
        target.copy_(source)
    (y,) = test(x2)
    expected = (x2 - (mean_sum / 1.9).view(1, 3, 1, 1)) / torch.sqrt(
        (var_sum / 1.9).view(1, 3, 1, 1) + 1e-5)
    torch.testing.assert_close(y, expected)
    assert test.use_global_stats and not bn.use_global_stats


def test_prelu_relu_dropout():
    prelu = build('name: "r" type: "PReLU"', shapes=[(2, 3, 4)])
    assert torch.equal(prelu.caffe_blobs()[0], torch.full((3,), 0.25))
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(prelu(x)[0], torch.where(x > 0, x, 0.25 * x))
    shared = build('name: "r" type: "PReLU" prelu_param { channel_shared: true }',
                   shapes=[(2, 3, 4)])
    assert shared.caffe_blobs()[0].shape == (1,)
    leaky = build('name: "l" type: "ReLU" relu_param { negative_slope: 0.1 }')
    torch.testing.assert_close(leaky(x)[0], torch.where(x > 0, x, 0.1 * x))
    drop = build('name: "d" type: "Dropout" dropout_param { dropout_ratio: 0.4 }', "TRAIN")
    y = drop(torch.ones(20000))[0]
    kept = y[y != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / 0.6))
    assert abs(kept.numel() / 20000 - 0.6) < 0.02
    test = build('name: "d" type: "Dropout" dropout_param { dropout_ratio: 0.4 }', "TEST")
    assert torch.equal(test(x)[0], x)


def test_eltwise_concat_flatten_reshape_softmax():
    a, b = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    s = build('name: "e" type: "Eltwise" bottom: "a" bottom: "b" '
              'eltwise_param { operation: SUM coeff: 1 coeff: -0.5 }')
    torch.testing.assert_close(s(a, b)[0], a - 0.5 * b)
    assert torch.equal(build('name: "e" type: "Eltwise" eltwise_param { operation: 0 }')(a, b)[0],
                       a * b)
    assert torch.equal(build('name: "e" type: "Eltwise" eltwise_param { operation: MAX }')(a, b)
                       [0], torch.maximum(a, b))
    with pytest.raises(ValueError, match="'e'.*one shape"):
        build('name: "e" type: "Eltwise"')(a, torch.randn(2, 3, 5))
    cat = build('name: "c" type: "Concat" concat_param { axis: -1 }')
    assert cat(a, b)[0].shape == (2, 3, 8)
    flat = build('name: "f" type: "Flatten" flatten_param { axis: 1 end_axis: 1 }')
    assert flat(torch.randn(2, 3, 4, 5))[0].shape == (2, 3, 4, 5)
    assert build('name: "f" type: "Flatten"')(torch.randn(2, 3, 4, 5))[0].shape == (2, 60)
    r = build('name: "r" type: "Reshape" reshape_param { shape { dim: 0 dim: -1 dim: 2 } }')
    assert r(torch.randn(2, 3, 4))[0].shape == (2, 6, 2)
    r2 = build('name: "r" type: "Reshape" reshape_param { shape { dim: 2 dim: 2 } axis: 1 '
               'num_axes: 1 }')
    assert r2(torch.randn(3, 4, 5))[0].shape == (3, 2, 2, 5)
    with pytest.raises(ValueError, match="'r'.*reshape|'r'.*infer"):
        build('name: "r" type: "Reshape" reshape_param { shape { dim: 7 dim: -1 } }')(
            torch.randn(2, 3))
    sm = build('name: "s" type: "Softmax" softmax_param { axis: 2 }')
    torch.testing.assert_close(sm(a)[0], torch.softmax(a, dim=2))


def test_accuracy_top_k():
    scores = torch.tensor([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5]])
    labels = torch.tensor([2.0, 0.0, 0.0])
    top1 = build('name: "a" type: "Accuracy"')
    top2 = build('name: "a" type: "Accuracy" accuracy_param { top_k: 2 }')
    assert float(top1(scores, labels)[0]) == pytest.approx(1 / 3)
    assert float(top2(scores, labels)[0]) == pytest.approx(2 / 3)
    ties = torch.tensor([[0.5, 0.5, 0.0]])  # a tie counts against the label, as in Caffe
    assert float(top1(ties, torch.tensor([0]))[0]) == 0.0
    assert float(top2(ties, torch.tensor([1]))[0]) == 1.0
    with pytest.raises(ValueError, match="'a'.*label 3"):
        top1(scores, torch.tensor([3, 0, 0]))


FOCAL = ('name: "focal" type: "FocalLoss" top: "loss" focal_loss_param: { type: ORIGIN gamma: 2 '
         'alpha: 0.25 beta: 1 }')


def test_focal_loss_value_and_caffe_gradient():
    torch.manual_seed(1)
    x = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 3, 6, 2, 2])
    layer = build(FOCAL)
    (loss,) = layer(x, y)
    p = torch.softmax(x.detach(), dim=1)
    pt = p[torch.arange(5), y]
    expected = (-0.25 * (1 - pt) ** 2 * torch.log(pt)).mean()  # VALID normalisation: the mean
    torch.testing.assert_close(loss, expected)
    loss.backward()
    # The Caffe layer's Backward_cpu, written out: grad = alpha (1-pt)^g - alpha g (1-pt)^(g-1)
    # pt log pt, times (p_j - [j == y]), divided by the normaliser.
    g = 0.25 * (1 - pt) ** 2 - 0.25 * 2 * (1 - pt) * pt * torch.log(pt)
    onehot = torch.nn.functional.one_hot(y, 7).double()
    torch.testing.assert_close(x.grad, g[:, None] * (p - onehot) / 5)
    assert torch.autograd.gradcheck(lambda t: layer(t, y)[0], (x.detach().requires_grad_(),))


def test_focal_loss_rejects_linear_and_ignores_label():
    with pytest.raises(ValueError, match="'focal'.*LINEAR"):
        build(FOCAL.replace("ORIGIN", "LINEAR"))
    layer = build(FOCAL + ' loss_param { ignore_label: -1 }')
    x = torch.randn(4, 3)
    full = layer(x[:2], torch.tensor([1, 2]))[0]
    partial = layer(x, torch.tensor([1, 2, -1, -1]))[0]
    torch.testing.assert_close(full, partial)


@pytest.mark.parametrize("kind, norm", [("xavier", "FAN_IN"), ("xavier", "AVERAGE"),
                                        ("msra", "FAN_OUT")])
def test_fillers_follow_caffe_fans(kind, norm):
    w = torch.empty(200, 50, 3, 3)
    fill(w, parse_prototxt(f'type: "{kind}" variance_norm: {norm}'))
    fan_in, fan_out = 50 * 9, 200 * 9
    n = {"FAN_IN": fan_in, "FAN_OUT": fan_out, "AVERAGE": (fan_in + fan_out) / 2}[norm]
    if kind == "xavier":
        bound = math.sqrt(3 / n)
        assert float(w.abs().max()) <= bound and float(w.abs().max()) > 0.98 * bound
        assert float(w.std()) == pytest.approx(bound / math.sqrt(3), rel=0.03)
    else:
        assert float(w.std()) == pytest.approx(math.sqrt(2 / n), rel=0.03)
    g = fill(torch.empty(100000), parse_prototxt('type: "gaussian" mean: 2 std: 0.5'))
    assert float(g.mean()) == pytest.approx(2, abs=0.01)
    assert float(g.std()) == pytest.approx(0.5, rel=0.02)
    u = fill(torch.empty(10000), parse_prototxt('type: "uniform" min: -2 max: 3'))
    assert -2 <= float(u.min()) and float(u.max()) <= 3
    assert torch.equal(fill(torch.empty(3), parse_prototxt('type: "constant" value: 30')),
                       torch.full((3,), 30.0))
    with pytest.raises(ValueError, match="conv1 weight.*bilinear"):
        fill(w, parse_prototxt('type: "bilinear"'), where="conv1 weight")


def test_fill_takes_a_mapping_like_the_library_layers():
    """One filler implementation: the seed layers' keyword dicts go through the same ``fill``."""
    t = fill(torch.empty(4, 6), {"type": "constant", "value": 2.5})
    assert torch.equal(t, torch.full((4, 6), 2.5))
    torch.manual_seed(0)
    x = fill(torch.empty(200, 50), {"type": "xavier"})
    assert float(x.abs().max()) <= (3.0 / 50) ** 0.5 and float(x.abs().max()) > 0.2
    assert torch.count_nonzero(fill(torch.empty(3), {})) == 0  # Caffe default: constant 0
    with pytest.raises(ValueError,
                       match=r"InnerProduct weight: unknown filler field\(s\) \['vlaue'\]"):
        fill(torch.empty(2), {"type": "constant", "vlaue": 1}, where="InnerProduct weight")
    from marginface.caffe.margin_layers import InnerProduct

    with pytest.raises(ValueError, match="InnerProduct weight: unknown filler type 'bogus'"):
        InnerProduct(3, 4, weight_filler={"type": "bogus"})
