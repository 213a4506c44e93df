"""load_net: wiring by blob name, phases, inputs, lazy parameters, param groups and errors."""

from __future__ import annotations

import pytest
import torch

from marginface.caffe import load_net

NET = '''
name: "tiny"
input: "data"
input_shape { dim: 2 dim: 3 dim: 8 dim: 8 }
layer { name: "conv1/a.b" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  convolution_param { num_output: 4 kernel_size: 3 pad: 1
    weight_filler { type: "msra" } bias_filler { type: "constant" value: 0.5 } } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "relu1" type: "PReLU" bottom: "conv1" top: "conv1"
  param { lr_mult: 0 } }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
  convolution_param { num_output: 4 kernel_size: 1 weight_filler { type: "xavier" } } }
layer { name: "sum" type: "Eltwise" bottom: "conv1" bottom: "conv2" top: "sum" }
layer { name: "drop" type: "Dropout" bottom: "sum" top: "sum"
  include { phase: TRAIN } }
layer { name: "pool" type: "Pooling" bottom: "sum" top: "pool"
  pooling_param { pool: AVE global_pooling: true } }
layer { name: "flat" type: "Flatten" bottom: "pool" top: "flat" }
layer { name: "loss" type: "FocalLoss" bottom: "flat" bottom: "label" top: "loss"
  exclude { phase: TEST } }
layer { name: "acc" type: "Accuracy" bottom: "flat" bottom: "label" top: "acc"
  include { phase: TEST } }
'''


def test_wiring_in_place_layers_and_outputs():
    net = load_net(NET, "TRAIN")
    assert net.layer_names == ["conv1/a.b", "bn1", "relu1", "conv2", "sum", "drop", "pool",
                               "flat", "loss"]
    assert net.input_names == ["data", "label"]
    assert net.ready  # every shape was known from input_shape (label inferred as (N,))
    assert net.blob_shapes["flat"] == (2, 4) and net.blob_shapes["loss"] == ()
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([1, 3])
    out = net(data=x, label=y)
    assert set(out) == {"data", "label", "conv1", "conv2", "sum", "pool", "flat", "loss"}
    assert out["loss"].shape == () and torch.isfinite(out["loss"])
    # conv1 is rebound by the in-place BatchNorm and PReLU: the final value is after both
    conv = net.layer("conv1/a.b")
    raw = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)
    mean = raw.mean(dim=(0, 2, 3), keepdim=True)
    var = raw.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    normed = (raw - mean) / torch.sqrt(var + 1e-5)
    torch.testing.assert_close(out["conv1"], torch.where(normed > 0, normed, 0.25 * normed))
    assert net.output_names == ["loss"]
    net.loss(out).backward()
    assert conv.weight.grad is not None


def test_phase_rules_and_state():
    test = load_net(NET, "TEST")
    assert "drop" not in test.layer_names and "loss" not in test.layer_names
    assert "acc" in test.layer_names
    text = NET.replace("include { phase: TRAIN }", "include { stage: \"aug\" }")
    assert "drop" not in load_net(text, "TRAIN").layer_names
    assert "drop" in load_net(text, "TRAIN", stages=["aug"]).layer_names
    assert "drop" in load_net('state { stage: "aug" }\n' + text, "TRAIN").layer_names
    leveled = NET.replace("include { phase: TRAIN }", "include { min_level: 2 }")
    assert "drop" not in load_net(leveled).layer_names
    assert "drop" in load_net(leveled, level=3).layer_names
    with pytest.raises(ValueError, match="phase must be TRAIN or TEST"):
        load_net(NET, "VAL")


def test_parameters_blobs_param_groups_and_freezing():
    net = load_net(NET, "TRAIN")
    weight, bias = net.layer("conv1/a.b").caffe_blobs()
    assert weight.shape == (4, 3, 3, 3) and torch.equal(bias, torch.full((4,), 0.5))
    slope = net.layer("relu1").caffe_blobs()[0]
    assert not slope.requires_grad  # lr_mult 0 freezes
    mean, var, factor = net.layer("bn1").caffe_blobs()
    assert factor.shape == (1,) and not isinstance(mean, torch.nn.Parameter)
    groups = net.param_groups(0.1, 5e-4)
    by_mult = {(g["lr_mult"], g["decay_mult"]): g for g in groups}
    assert set(by_mult) == {(1.0, 1.0), (2.0, 0.0)}
    assert by_mult[(2.0, 0.0)]["lr"] == pytest.approx(0.2)
    assert by_mult[(2.0, 0.0)]["weight_decay"] == 0.0
    assert by_mult[(1.0, 1.0)]["weight_decay"] == pytest.approx(5e-4)
    ids = {id(p) for g in groups for p in g["params"]}
    assert id(slope) not in ids and id(bias) in ids
    conv2 = net.layer("conv2").caffe_blobs()
    assert all(id(p) in ids for p in conv2)  # no param spec: lr_mult 1, decay_mult 1
    torch.optim.SGD(groups, lr=0.1, momentum=0.9)


def test_lazy_parameters_without_input_shape():
    text = NET.replace("input_shape { dim: 2 dim: 3 dim: 8 dim: 8 }", "")
    net = load_net(text, "TRAIN")
    assert not net.ready
    with pytest.raises(ValueError, match="no parameters yet"):
        net.param_groups(0.1)
    net(data=torch.randn(1, 3, 6, 6), label=torch.tensor([0]))
    assert net.ready and net.layer("conv1/a.b").weight.shape == (4, 3, 3, 3)
    eager = load_net(text, "TRAIN", input_shapes={"data": (1, 3, 6, 6)})
    assert eager.ready
    with pytest.raises(ValueError, match="'nope'.*not inputs"):
        load_net(text, input_shapes={"nope": (1,)})


def test_undefined_bottoms_are_inputs_and_missing_inputs_name_the_layer():
    net = load_net(NET, "TRAIN")
    with pytest.raises(ValueError, match="layer 'loss' .*bottom blob 'label' was not given"):
        net(data=torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="unknown input"):
        net(data=torch.randn(2, 3, 8, 8), labels=torch.tensor([0, 1]))


def test_bad_nets_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"layer 'weird' \(Fancy, line 2\): unknown layer type"):
        load_net('input: "data"\nlayer { name: "weird" type: "Fancy" bottom: "data" top: "y" }')
    used_early = ('layer { name: "a" type: "ReLU" bottom: "x" top: "y" }\n'
                  'layer { name: "b" type: "ReLU" bottom: "z" top: "x" }')
    with pytest.raises(ValueError, match="layer 'a'.*bottom blob 'x' is used before"):
        load_net(used_early)
    path = tmp_path / "bad.prototxt"
    path.write_text('name: "n"\nlayer {\n  name: "a"\n  type "ReLU"\n}\n')
    with pytest.raises(ValueError, match=r"bad.prototxt:4:8: expected ':'"):
        load_net(path)
    with pytest.raises(FileNotFoundError):
        load_net(tmp_path / "missing.prototxt")
    with pytest.raises(FileNotFoundError):
        load_net(str(tmp_path / "missing.prototxt"))
    with pytest.raises(ValueError, match="'c'.*num_output is required.*line 1"):
        load_net('layer { name: "c" type: "Convolution" bottom: "x" top: "y" }')
    dup = ('layer { name: "a" type: "ReLU" bottom: "x" top: "y" }\n'
           'layer { name: "a" type: "ReLU" bottom: "y" top: "z" }')
    with pytest.raises(ValueError, match="duplicate layer name 'a'"):
        load_net(dup)


def test_v1_layers_and_input_dim():
    text = '''name: "old" input: "data" input_dim: 1 input_dim: 2 input_dim: 5 input_dim: 5
layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv" blobs_lr: 1 blobs_lr: 0
  weight_decay: 1 weight_decay: 0 convolution_param { num_output: 3 kernel_size: 3 } }
layers { name: "relu" type: RELU bottom: "conv" top: "conv" }
layers { name: "pool" type: POOLING bottom: "conv" top: "pool"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layers { name: "fc" type: INNER_PRODUCT bottom: "pool" top: "fc"
  inner_product_param { num_output: 2 } }
layers { name: "loss" type: SOFTMAX_LOSS bottom: "fc" bottom: "label" top: "loss" }'''
    net = load_net(text, "TEST")
    assert [net.info(n).type for n in net.layer_names] == ["Convolution", "ReLU", "Pooling",
                                                           "InnerProduct", "SoftmaxWithLoss"]
    assert net.blob_shapes["pool"] == (1, 3, 2, 2)
    assert not net.layer("conv").bias.requires_grad
    out = net(data=torch.randn(1, 2, 5, 5), label=torch.tensor([1]))
    assert out["pool"].shape == (1, 3, 2, 2) and bool((out["pool"] >= 0).all())
    assert out["fc"].shape == (1, 2) and out["loss"].shape == ()


def test_input_layer_and_data_layer_transform():
    text = '''
layer { name: "in" type: "Input" top: "data" top: "extra"
  input_param { shape { dim: 1 dim: 2 dim: 4 dim: 4 } shape { dim: 1 dim: 3 } } }
layer { name: "train_data" type: "ImageData" top: "img" top: "label" include { phase: TRAIN }
  transform_param { mean_value: 100 mean_value: 110 mean_value: 120 scale: 0.5 crop_size: 2
    mirror: true }
  image_data_param { source: "list.txt" batch_size: 16 new_height: 4 new_width: 4 } }
layer { name: "relu" type: "ReLU" bottom: "data" top: "r" }
'''
    net = load_net(text, "TRAIN")
    assert net.input_names == ["data", "extra", "img", "label"]
    assert net.blob_shapes["data"] == (1, 2, 4, 4) and net.blob_shapes["extra"] == (1, 3)
    (inp, img) = net.data_layers
    assert inp.type == "Input" and img.tops == ["img", "label"]
    assert (img.batch_size, img.source, img.crop_size, img.mirror) == (16, "list.txt", 2, True)
    pixels = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    out = img.transform(pixels, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 2, 2)
    mean = torch.tensor([100.0, 110.0, 120.0]).view(1, 3, 1, 1)
    # every output is a 2x2 crop of the input (maybe mirrored), minus the mean, times the scale
    for n in range(2):
        crop = out[n] / 0.5 + mean[0]
        windows = [pixels[n, :, i:i + 2, j:j + 2] for i in range(3) for j in range(3)]
        assert any(torch.equal(crop, w) or torch.equal(crop, w.flip(-1)) for w in windows)
    test_layer = load_net(text, "TEST")
    assert [d.name for d in test_layer.data_layers] == ["in"]
    img.phase = "TEST"  # centre crop, no mirror
    centre = img.transform(pixels)
    torch.testing.assert_close(centre, (pixels[:, :, 1:3, 1:3] - mean) * 0.5)


def test_fields_the_builder_does_not_use_are_reported():
    text = '''mem_param { optimize_train: true }
input: "data" input_shape { dim: 1 dim: 1 dim: 4 dim: 4 }
layer { name: "p" type: "Pooling" bottom: "data" top: "p" weird: 1
  pooling_param { pool: MAX kernel_size: 3 stride: 2 round_mode: FLOOR shiny: true } }'''
    with pytest.warns(UserWarning) as record:
        net = load_net(text)
    messages = [str(r.message) for r in record]
    assert any("net: ignoring field(s) ['mem_param']" in m for m in messages)
    assert any("layer 'p' (Pooling, line 3): ignoring field(s) ['weird'] of the layer" in m
               for m in messages)
    assert any("['shiny'] of pooling_param" in m for m in messages)
    assert net.blob_shapes["p"] == (1, 1, 1, 1)  # FLOOR: (4 - 3) // 2 + 1; CEIL would give 2
    assert net(data=torch.randn(1, 1, 4, 4))["p"].shape == (1, 1, 1, 1)


def test_loss_weight_and_propagate_down():
    text = '''input: "a" input_shape { dim: 3 dim: 4 }
layer { name: "act" type: "ReLU" bottom: "a" top: "b" relu_param { negative_slope: 0.5 } }
layer { name: "l1" type: "FocalLoss" bottom: "b" bottom: "label" top: "l1" loss_weight: 2 }
layer { name: "l2" type: "FocalLoss" bottom: "b" bottom: "label" top: "l2"
  propagate_down: false propagate_down: false }'''
    net = load_net(text)
    assert [net.info(n).loss_weight for n in ("act", "l1", "l2")] == [[0.0], [2.0], [1.0]]
    a = torch.randn(3, 4, requires_grad=True)
    out = net(a=a, label=torch.tensor([0, 1, 2]))
    total = net.loss(out)
    torch.testing.assert_close(total, 2 * out["l1"] + out["l2"])
    total.backward()
    expected = torch.autograd.grad(2 * net(a=a, label=torch.tensor([0, 1, 2]))["l1"], a)[0]
    torch.testing.assert_close(a.grad, expected)  # l2 passes no gradient (propagate_down false)
