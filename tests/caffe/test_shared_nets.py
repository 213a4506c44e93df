"""Every net in ../shared/caffe builds in both phases, runs, and has its architecture's size."""

from __future__ import annotations

import pytest
import torch

from marginface.caffe import load_net
from marginface.caffe.summary import summarize_net

pytestmark = pytest.mark.shared

NETS = ["amsoftmax/face_train_test", "arcface/cosin_add_m", "combined-margin/example",
        "combined-margin/spherenet36_model", "mobilefacenet/deploy",
        "mobilefacenet/deploy_revised", "sphereface/sphereface_deploy",
        "sphereface/sphereface_model", "mtcnn/det1", "mtcnn/det2", "mtcnn/det3",
        "seed/cosface_head", "seed/arcface_head", "seed/combined_margin_head"]


def _inputs(net, batch: int) -> dict[str, torch.Tensor]:
    inputs = {}
    for name in net.input_names:
        shape = net.blob_shapes.get(name)
        if name == "label":
            inputs[name] = torch.arange(batch) % 7
        elif shape is not None:
            inputs[name] = torch.randn(batch, *shape[1:])
    return inputs


# spherenet36_model.prototxt carries a Caffe fork's memory and augmentation options (warned about,
# see test_fork_fields_are_reported)
IGNORED_FORK_FIELDS = "ignore:.*ignoring field"


@pytest.mark.filterwarnings(IGNORED_FORK_FIELDS)
@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
@pytest.mark.parametrize("name", NETS)
def test_net_builds_and_runs_forward(caffe_dir, library, as_if_trained, one_thread, name,
                                     phase):
    path = caffe_dir / f"{name}.prototxt"
    probe = load_net(path, phase)
    shapes = {}
    if "data" in probe.input_names and probe.blob_shapes.get("data") is None:
        shapes["data"] = (1, 3, 112, 96)  # the face nets' ImageData/Data input, 112x96
    for head_input in ("fc5", "norm_fc5"):
        if head_input in probe.input_names:
            shapes[head_input] = (2, 512)
    net = as_if_trained(load_net(path, phase, input_shapes=shapes))
    assert net.ready, "every parameter is created at construction once input shapes are known"
    batch = net.blob_shapes[net.input_names[0]][0]
    with torch.no_grad():
        out = net(**_inputs(net, batch))
    for blob, value in out.items():
        assert tuple(value.shape) == net.blob_shapes[blob], blob
    for blob in net.output_names:
        assert bool(torch.isfinite(out[blob]).all()), blob
    if "label" in net.input_names:
        assert any(net.info(n).loss_weight[0] for n in net.layer_names if net.info(n).tops)


def _spherenet_params(units: tuple[int, int, int, int], batchnorm: bool) -> int:
    """Learnable values of SphereNet-N (Liu et al., SphereFace, CVPR 2017, Table 2).

    Four stages of 64, 128, 256, 512 channels; each starts with a 3x3 stride-2 convolution and
    holds ``units[i]`` residual units of two 3x3 convolutions; every convolution has a bias and a
    per-channel PReLU; fc5 maps the 512x7x6 map of a 112x96 input to 512. With ``batchnorm`` (the
    CombinedMargin SphereNet-36) every convolution is followed by BatchNorm + Scale (gamma, beta;
    the BatchNorm blobs are statistics, not parameters), and BatchNorm + Scale also come before
    and after fc5.
    """
    total, c_in = 0, 3
    extra = 2 if batchnorm else 0  # Scale gamma and beta per channel
    for c, n in zip((64, 128, 256, 512), units, strict=True):
        total += 9 * c_in * c + c + c + extra * c
        total += n * 2 * (9 * c * c + c + c + extra * c)
        c_in = c
    total += 512 * 7 * 6 * 512 + 512
    if batchnorm:
        total += 2 * 512 + 2 * 512
    return total


def test_spherenet20_parameter_count(caffe_dir, library):
    # SphereFace-20: units (1, 2, 4, 1). 22,670,656 is also the 22.671 MParams that OpenVINO's
    # model card gives for this deploy net; the paper has no parameter table.
    expected = _spherenet_params((1, 2, 4, 1), batchnorm=False)
    assert expected == 22_670_656
    deploy = summarize_net(caffe_dir / "sphereface/sphereface_deploy.prototxt", "TEST")
    assert deploy.total_params == expected
    # The training nets add only the classifier (and the seed's fixed-s Scale blob).
    for name, classifier in [("sphereface/sphereface_model", ["fc6"]),
                             ("amsoftmax/face_train_test", ["fc6_l2", "fc6_margin_scale"])]:
        summary = summarize_net(caffe_dir / f"{name}.prototxt", "TRAIN",
                                {"data": (1, 3, 112, 96)})
        assert summary.total_params - summary.params_of(classifier) == expected, name


@pytest.mark.filterwarnings(IGNORED_FORK_FIELDS)
def test_spherenet36_parameter_count(caffe_dir, library):
    # SphereFace-36: units (2, 4, 8, 2), here with BatchNorm+Scale as CombinedMargin-caffe uses it.
    summary = summarize_net(caffe_dir / "combined-margin/spherenet36_model.prototxt", "TRAIN",
                            {"data": (1, 3, 112, 96)})
    backbone = summary.total_params - summary.params_of(["fc6_l2", "fc6_margin_scale"])
    assert backbone == _spherenet_params((2, 4, 8, 2), batchnorm=True)
    assert 32.5e6 < backbone < 33.0e6
    assert summary.params_of(["fc6_l2"]) == 180_855 * 512


def test_mobilefacenet_parameter_count(caffe_dir):
    # MobileFaceNet (Chen et al. 2018): "0.99M parameters". deploy_revised follows the paper
    # (depthwise conv2, no conv biases); deploy.prototxt keeps a full 3x3 conv1_dw and biases.
    revised = summarize_net(caffe_dir / "mobilefacenet/deploy_revised.prototxt", "TEST")
    assert revised.total_params == pytest.approx(0.99e6, rel=0.015)
    deploy = summarize_net(caffe_dir / "mobilefacenet/deploy.prototxt", "TEST")
    assert deploy.total_params == pytest.approx(1.0e6, rel=0.05)
    assert deploy.inputs == {"data": (1, 3, 112, 96)}
    assert all(None not in row.top_shapes for row in deploy.rows)


def test_fork_fields_are_reported(caffe_dir, library):
    with pytest.warns(UserWarning) as record:
        load_net(caffe_dir / "combined-margin/spherenet36_model.prototxt", "TRAIN")
    messages = "\n".join(str(r.message) for r in record)
    assert "['mem_param']" in messages
    assert "layer 'data' (ImageData, line 7)" in messages
    assert "'contrast_brightness_adjustment'" in messages and "of transform_param" in messages
