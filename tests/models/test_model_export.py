"""ONNX export (library and CLI): dynamic batch axis, ONNX Runtime parity with PyTorch."""

from __future__ import annotations

import json

import numpy as np
import onnx  # noqa: E402  (dev extra)
import onnxruntime as ort  # noqa: E402
import pytest
import torch

from marginface.cli.main import main
from marginface.models import create_model, export_onnx, save_model
from marginface.models.io import METADATA_KEY


def _trained(name, **kwargs):
    model = create_model(name, **kwargs)
    model.train()
    model(torch.randn(4, 3, *model.config.input_size))
    return model.eval()


def _run_onnx(path, images):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["embeddings"], {"images": images.numpy()})[0]


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("mobilefacenet", {"input_size": (112, 96)}), ("iresnet18", {"input_size": (32, 32)}),
     ("sphere20", {"input_size": (32, 48), "batch_norm": True})],
)
def test_onnx_runtime_matches_pytorch_for_any_batch(tmp_path, name, kwargs):
    model = _trained(name, **kwargs)
    path = export_onnx(model, tmp_path / "model.onnx")
    for batch in (1, 5):  # exported with batch 2: the batch axis is dynamic
        images = torch.randn(batch, 3, *model.config.input_size)
        with torch.no_grad():
            expected = model(images).numpy()
        got = _run_onnx(path, images)
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())


def test_cli_export_writes_onnx_with_config_metadata(tmp_path, capsys):
    model = _trained("mobilefacenet", input_size=(112, 96))
    model_file = tmp_path / "mfn.safetensors"
    save_model(model, model_file)
    out = tmp_path / "mfn.onnx"
    assert main(["export", str(model_file), "--format", "onnx", "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    proto = onnx.load(str(out))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta[METADATA_KEY])["input_size"] == [112, 96]
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param == "batch"
    images = torch.rand(3, 3, 112, 96) * 2 - 1
    with torch.no_grad():
        expected = model(images).numpy()
    assert np.abs(_run_onnx(out, images) - expected).max() <= 1e-4


def test_cli_export_reports_a_missing_file(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope.safetensors"), "-o", str(tmp_path / "x")]) == 2
    assert "nope.safetensors" in capsys.readouterr().err
