"""Converting Caffe face models into marginface model files (marginface.caffe.convert)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from marginface.caffe import load_net
from marginface.caffe.convert import convert_caffe_model, preprocessing_from_data
from marginface.caffe.layer_types.data import DataLayerInfo
from marginface.caffe.layer_types.norm import BatchNorm
from marginface.caffe.weights import save_caffemodel
from marginface.cli.main import main
from marginface.eval import Embedder, compute_embeddings
from marginface.eval.model_report import load_model_file
from marginface.models import load_model, read_config

SPHERE = "sphereface/sphereface_deploy.prototxt"
MOBILE = "mobilefacenet/deploy_revised.prototxt"


def _random_caffemodel(prototxt: Path | str, path: Path, seed: int = 0) -> object:
    """Build the TEST net, give every blob random values (BatchNorm: a trained layer's kind of
    statistics with a scale factor != 1; biases, slopes, Scale gamma/beta random) and save it."""
    net = load_net(prototxt, "TEST")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.layers:
            if isinstance(module, BatchNorm):
                module.scale_factor.fill_(3.0)
                module.mean.copy_(0.3 * torch.randn(module.mean.shape, generator=g))
                module.variance.copy_(3.0 * (0.5 + torch.rand(module.mean.shape, generator=g)))
                continue
            for j, blob in enumerate(module.caffe_blobs()):
                if j == 0 and blob.dim() > 1:  # weights: keep the prototxt's filler
                    continue
                blob.copy_(0.5 + 0.2 * torch.randn(blob.shape, generator=g) if j == 0
                           else 0.1 * torch.randn(blob.shape, generator=g))
    save_caffemodel(net, path)
    return net


@pytest.mark.shared
@pytest.mark.parametrize(("prototxt", "model_name"), [(SPHERE, "sphere20"),
                                                      (MOBILE, "mobilefacenet")])
def test_converted_model_gives_caffe_embeddings(caffe_dir, tmp_path, one_thread, prototxt,
                                                model_name, capsys):
    """CLI convert -> load_model -> same embeddings as the Caffe net, also through the Embedder
    on pixels (BGR order, (x - 127.5) / 128 as the nets were trained)."""
    weights = tmp_path / "random.caffemodel"
    net = _random_caffemodel(caffe_dir / prototxt, weights)
    out = tmp_path / "model.safetensors"
    code = main(["caffe", "convert", str(caffe_dir / prototxt), str(weights), "--model",
                 model_name, "--input-size", "112x96", "-o", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "embedding check" in printed and f"wrote {out}" in printed
    config = read_config(out)
    assert config.name == model_name and config.input_size == (112, 96)
    assert config.embedding_dim == (512 if model_name == "sphere20" else 128)
    assert config.preprocessing.channel_order == "BGR"
    model = load_model(out)
    x = torch.randn(3, 3, 112, 96, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = net(data=x)["fc5"]
        got = model(x)
    scale = float(expected.abs().max())
    assert float((got - expected).abs().max()) <= 1e-5 * max(scale, 1.0)
    # the embedding path: pixels in RGB -> stored preprocessing -> folded, channels-last model
    pixels = torch.randint(0, 256, (2, 3, 112, 96), generator=torch.Generator().manual_seed(6))
    caffe_input = (pixels.float().flip(1) - 127.5) / 128.0
    with torch.no_grad():
        reference = net(data=caffe_input)["fc5"]
    embedded = Embedder(model, batch_size=2).embed_pixels(pixels)
    assert float((embedded - reference).abs().max()) <= 1e-4 * max(
        float(reference.abs().max()), 1.0)
    # the evaluation library's path: model file -> aligned 112x96 PNG crops -> embeddings
    paths = []
    for i, image in enumerate(pixels):
        paths.append(tmp_path / f"face{i}.png")
        Image.fromarray(image.permute(1, 2, 0).numpy().astype(np.uint8)).save(paths[-1])
    result = compute_embeddings(load_model_file(out), paths, flip=None, num_workers=0,
                                progress=False, engine="eager")
    assert not result.failed and result.methods["template"] == 2
    assert float((torch.from_numpy(result.embeddings) - reference).abs().max()) <= 1e-4 * max(
        float(reference.abs().max()), 1.0)


@pytest.mark.shared
def test_dry_run_and_mapping_report(caffe_dir, tmp_path, one_thread):
    weights = tmp_path / "w.caffemodel"
    _random_caffemodel(caffe_dir / MOBILE, weights)
    model, report = convert_caffe_model(caffe_dir / MOBILE, weights, model_name="mobilefacenet",
                                        dry_run=True)
    assert not report.applied and report.max_abs_diff is None
    table = report.table()
    assert "conv1/bn:running_mean" in table and "conv1.bn.running_mean" in table
    assert "fc5:weight" in table and "embedding.conv.weight" in table  # IP -> 1x1 conv
    assert "dry run" in table
    # BatchNorm + Scale fold: one torch BN per Caffe pair (50 BN layers in the net)
    assert sum(r.model_key.endswith("running_var") for r in report.mapping.rows) == 50
    assert not (tmp_path / "out.safetensors").exists()


@pytest.mark.shared
def test_wrong_model_names_the_first_layer_that_does_not_fit(caffe_dir, tmp_path, one_thread):
    weights = tmp_path / "w.caffemodel"
    _random_caffemodel(caffe_dir / SPHERE, weights)
    # conv1_1's weight, bias and slope happen to fit conv1.conv / conv1.bn; conv1_2 does not
    with pytest.raises(ValueError, match=r"Caffe layer 'conv1_2' \(weight, 'conv1_2:weight'\) "
                       r"of shape \(64, 64, 3, 3\) does not fit model tensor "
                       r"'conv1.bn.running_mean'"):
        convert_caffe_model(caffe_dir / SPHERE, weights, model_name="mobilefacenet",
                            input_size=(112, 96))
    code = main(["caffe", "convert", str(caffe_dir / SPHERE), str(weights), "--model",
                 "sphere36", "-o", str(tmp_path / "x.safetensors")])
    assert code == 2 and not (tmp_path / "x.safetensors").exists()


@pytest.mark.shared
def test_structure_difference_beyond_weights_is_caught(caffe_dir, tmp_path, one_thread):
    """Same blobs, different computation (an Eltwise PROD instead of SUM): the embedding check
    refuses the conversion."""
    text = (caffe_dir / SPHERE).read_text()
    changed = text.replace("operation: 1", "operation: PROD", 1)  # SUM (1) -> PROD
    assert changed != text
    weights = tmp_path / "w.caffemodel"
    _random_caffemodel(caffe_dir / SPHERE, weights)
    with pytest.raises(ValueError, match="does not reproduce the Caffe net"):
        convert_caffe_model(changed, weights, model_name="sphere20")


@pytest.mark.shared
def test_batchnorm_eps_must_match(caffe_dir, tmp_path, one_thread):
    text = (caffe_dir / MOBILE).read_text()
    marker = 'name: "conv1/bn"\n  type: "BatchNorm"'
    assert marker in text
    changed = text.replace(marker, marker + "\n  batch_norm_param { eps: 0.001 }", 1)
    weights = tmp_path / "w.caffemodel"
    _random_caffemodel(caffe_dir / MOBILE, weights)
    with pytest.raises(ValueError, match=r"'conv1/bn' \(BatchNorm\): eps 0.001"):
        convert_caffe_model(changed, weights, model_name="mobilefacenet")


def test_preprocessing_from_the_data_layer():
    data = DataLayerInfo(name="data", type="ImageData", tops=["data", "label"], phase="TRAIN",
                         scale=0.0078125, mean_value=[127.5])
    p = preprocessing_from_data(data, "sphere20", (112, 96))
    assert p.mean == (127.5,) * 3 and p.std == (128.0,) * 3 and p.channel_order == "BGR"
    assert p.alignment_template == "sphereface_112x96"
    data3 = DataLayerInfo(name="d", type="Data", tops=["data"], phase="TRAIN", scale=0.5,
                          mean_value=[104.0, 117.0, 123.0])
    assert preprocessing_from_data(data3, "sphere20", (112, 96)).mean == (104.0, 117.0, 123.0)
    with pytest.raises(ValueError, match="mean_file"):
        preprocessing_from_data(DataLayerInfo(name="d", type="Data", tops=["data"],
                                              phase="TRAIN", mean_file="m.binaryproto"),
                                "sphere20", (112, 96))


@pytest.mark.shared
def test_training_net_with_image_data_layer(caffe_dir, tmp_path, one_thread):
    """The AM-Softmax train/test net: fc5 as the output (the classifier and loss are left out),
    the preprocessing from its ImageData transform ((x - 128) * 0.0078125)."""
    path = caffe_dir / "amsoftmax" / "face_train_test.prototxt"
    net = load_net(path, "TEST", input_shapes={"data": (1, 3, 112, 96)})
    weights = tmp_path / "am.caffemodel"
    save_caffemodel(net, weights)
    with pytest.raises(ValueError, match="shape of input 'data' is not in the prototxt"):
        convert_caffe_model(path, weights, model_name="sphere20", output_blob="fc5")
    model, report = convert_caffe_model(path, weights, model_name="sphere20",
                                        input_size=(112, 96), output_blob="fc5")
    assert report.max_abs_diff is not None and report.max_abs_diff <= 1e-5 * max(
        report.max_abs_embedding, 1.0)
    assert "fc6_l2" in report.skipped_layers and "softmax_loss" in report.skipped_layers
    pre = model.config.preprocessing
    assert (pre.mean, pre.std, pre.channel_order) == ((128.0,) * 3, (128.0,) * 3, "BGR")
    with pytest.raises(ValueError, match="output_blob 'nope' is not a top"):
        convert_caffe_model(path, weights, model_name="sphere20", input_size=(112, 96),
                            output_blob="nope")
