"""Weights: .caffemodel into a built net and back (the MTCNN nets are real Caffe weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from marginface.caffe import load_caffemodel, load_net, save_caffemodel

TINY = '''
name: "tiny" input: "data" input_shape { dim: 2 dim: 3 dim: 6 dim: 6 }
layer { name: "conv/1" type: "Convolution" bottom: "data" top: "c"
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.3 }
    bias_filler { type: "uniform" min: -1 max: 1 } } }
layer { name: "bn" type: "BatchNorm" bottom: "c" top: "c" }
layer { name: "act" type: "PReLU" bottom: "c" top: "c" prelu_param { filler { type: "uniform" } } }
layer { name: "pool" type: "Pooling" bottom: "c" top: "p"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
'''


@pytest.fixture
def caffemodel():
    import marginface.caffe.caffemodel as module

    return module


def test_round_trip_of_a_trained_net(tmp_path, caffemodel):
    net = load_net(TINY, "TRAIN")
    x = torch.randn(2, 3, 6, 6)
    net(data=x)  # moves the BatchNorm sums away from zero
    path = tmp_path / "tiny.caffemodel"
    assert save_caffemodel(net, path) == 3
    entries = {e.name: e for e in caffemodel.read_caffemodel(path)}
    assert set(entries) == {"conv/1", "bn", "act"}
    for name in entries:
        for blob, tensor in zip(entries[name].blobs, net.layer(name).caffe_blobs(), strict=True):
            np.testing.assert_array_equal(blob.reshape(tensor.shape), tensor.detach().numpy())
    assert entries["bn"].blobs[2].shape == (1,)
    fresh = load_net(TINY, "TEST")
    report = load_caffemodel(fresh, path, strict=True)
    assert report.loaded == ["conv/1", "bn", "act"]
    trained = load_net(TINY, "TEST")
    trained.load_state_dict(net.state_dict())
    torch.testing.assert_close(fresh(data=x)["p"], trained(data=x)["p"], rtol=0, atol=0)


def test_mismatch_and_missing_layers_are_reported(tmp_path, caffemodel):
    net = load_net(TINY)
    path = tmp_path / "tiny.caffemodel"
    save_caffemodel(net, path)
    wider = load_net(TINY.replace("num_output: 4", "num_output: 5"))
    with pytest.raises(ValueError, match=r"layer 'conv/1' \(Convolution\): blob 0 has shape "
                                         r"\(4, 3, 3, 3\) in tiny.caffemodel, the layer expects "
                                         r"\(5, 3, 3, 3\)"):
        load_caffemodel(wider, path)
    renamed = load_net(TINY.replace('name: "act"', 'name: "act2"'))
    with pytest.warns(UserWarning, match=r"not the net: \['act'\].*not the file: \['act2'\]"):
        report = load_caffemodel(renamed, path)
    assert report.only_in_file == ["act"] and report.only_in_net == ["act2"]
    with pytest.raises(ValueError, match="act2"):
        load_caffemodel(renamed, path, strict=True)
    truncated = tmp_path / "cut.caffemodel"
    truncated.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ValueError, match=r"cut.caffemodel: layer .*'act'"):
        load_caffemodel(load_net(TINY), truncated)
    with pytest.raises(FileNotFoundError):
        load_caffemodel(net, tmp_path / "none.caffemodel")


@pytest.mark.shared
@pytest.mark.parametrize("name, size, outputs, unused", [
    ("det1", 12, {"prob1": (1, 2, 1, 1), "conv4-2": (1, 4, 1, 1)}, []),
    # the R-Net file also holds a landmark head (conv5-3) that det2.prototxt does not use
    ("det2", 24, {"prob1": (1, 2), "conv5-2": (1, 4)}, ["conv5-3"]),
    ("det3", 48, {"prob1": (1, 2), "conv6-2": (1, 4), "conv6-3": (1, 10)}, []),
])
def test_mtcnn_weights(shared_dir, caffemodel, tmp_path, name, size, outputs, unused):
    prototxt = shared_dir / "caffe" / "mtcnn" / f"{name}.prototxt"
    weights = shared_dir / "caffe" / "mtcnn" / f"{name}.caffemodel"
    net = load_net(prototxt, "TEST")
    if unused:
        with pytest.warns(UserWarning, match="in the file but not the net"):
            report = load_caffemodel(net, weights)
    else:
        report = load_caffemodel(net, weights, strict=True)
    assert report.only_in_file == unused and report.only_in_net == []
    assert report.loaded == [n for n in net.layer_names if net.layer(n).caffe_blobs()]
    x = torch.rand(1, 3, size, size) * 2 - 1  # MTCNN's (pixel - 127.5) / 128 range
    with torch.no_grad():
        out = net(data=x)
    assert {k: tuple(out[k].shape) for k in outputs} == outputs
    for key in outputs:
        assert bool(torch.isfinite(out[key]).all())
    torch.testing.assert_close(out["prob1"].sum(dim=1), torch.ones_like(out["prob1"][:, 0]))
    # The loaded values are the file's, and writing them back loses nothing.
    original = {e.name: e.blobs for e in caffemodel.read_caffemodel(weights) if e.blobs}
    conv1 = net.layer("conv1").caffe_blobs()[0].detach().numpy()
    np.testing.assert_array_equal(conv1, original["conv1"][0].reshape(conv1.shape))
    copy = tmp_path / f"{name}.caffemodel"
    save_caffemodel(net, copy)
    again = {e.name: e.blobs for e in caffemodel.read_caffemodel(copy)}
    assert set(again) == set(original) - set(unused)
    for layer, blobs in again.items():
        blobs = original[layer]
        for a, b in zip(blobs, again[layer], strict=True):
            np.testing.assert_array_equal(a.reshape(b.shape), b)
    net2 = load_net(prototxt, "TEST")
    load_caffemodel(net2, copy, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(net2(data=x)["prob1"], out["prob1"], rtol=0, atol=0)


@pytest.mark.shared
def test_truncated_caffemodel_names_the_layer(shared_dir, caffemodel, tmp_path):
    data = (shared_dir / "caffe" / "mtcnn" / "det3.caffemodel").read_bytes()
    cut = tmp_path / "det3_cut.caffemodel"
    cut.write_bytes(data[:500_000])
    net = load_net(shared_dir / "caffe" / "mtcnn" / "det3.prototxt", "TEST")
    with pytest.raises(ValueError, match=r"det3_cut.caffemodel: layer .*'conv5'.*runs past"):
        load_caffemodel(net, cut)
