"""Hostile model files: a changed tensor byte, NaN weights, files from before the checksum,
truncated files. The checksum is the model fingerprint galleries record (one source)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as safetensors_bytes

from marginface.models import create_model, load_model, model_fingerprint, save_model
from marginface.models.io import CHECKSUM_KEY, FORMAT_KEY, METADATA_KEY, read_checksum


def _model():
    return create_model("mobilefacenet", input_size=(112, 112), embedding_dim=8)


def _saved(tmp_path: Path, model=None) -> Path:
    path = tmp_path / "model.safetensors"
    save_model(model if model is not None else _model(), path)
    return path


def _hand_written(path: Path, model, extra: dict[str, str]) -> Path:
    """``model`` saved without save_model: config and format metadata plus ``extra``."""
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    path.write_bytes(safetensors_bytes(tensors, metadata={
        METADATA_KEY: json.dumps(model.config.to_dict()), FORMAT_KEY: "1", **extra}))
    return path


@pytest.mark.fault(kind="model file (.safetensors)", fault="one flipped byte in the tensor data",
                   behaviour="ValueError naming the file and both checksums")
def test_flipped_byte_is_refused(tmp_path):
    path = _saved(tmp_path)
    blob = bytearray(path.read_bytes())
    header_length = struct.unpack_from("<Q", blob)[0]
    blob[8 + header_length + 1000] ^= 0x10  # inside the first tensors, header untouched
    path.write_bytes(bytes(blob))
    stored = read_checksum(path)
    with pytest.raises(ValueError, match=rf"model.safetensors: tensor checksum mismatch: the file "
                                         rf"says sha256 {stored}, its tensors give [0-9a-f]{{64}}"):
        load_model(path)


@pytest.mark.fault(kind="model file (.safetensors)", fault="a NaN weight (diverged training)",
                   behaviour="ValueError naming the file and the tensor, on load and at export")
def test_nan_weight_is_refused_on_load_and_export(tmp_path):
    pytest.importorskip("onnx")
    from marginface.models.export import export_onnx

    model = _model()
    name, weight = next((n, p) for n, p in model.named_parameters() if p.dim() == 4)
    with torch.no_grad():
        weight.view(-1)[7] = float("nan")
    path = _saved(tmp_path, model)  # a checksum that matches: the NaN itself is the fault
    with pytest.raises(ValueError, match=rf"model.safetensors: tensor '{name}' .* holds 1 "
                                         r"non-finite value\(s\)"):
        load_model(path)
    with pytest.raises(ValueError, match=rf"export to .*m.onnx: tensor '{name}'"):
        export_onnx(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.fault(kind="model file (.safetensors)", fault="written before the checksum existed",
                   behaviour="loads with a warning naming the file")
def test_legacy_file_loads_with_warning(tmp_path):
    model = _model()
    path = _hand_written(tmp_path / "old.safetensors", model, {})
    with pytest.warns(UserWarning, match=r"old.safetensors carries no tensor checksum"):
        loaded = load_model(path)
    assert model_fingerprint(loaded) == model_fingerprint(model)


@pytest.mark.fault(kind="model file (.safetensors)", fault="checksum metadata edited",
                   behaviour="ValueError: mismatch between the stored and the computed checksum")
def test_edited_checksum_is_refused(tmp_path):
    path = _hand_written(tmp_path / "edited.safetensors", _model(), {CHECKSUM_KEY: "0" * 64})
    with pytest.raises(ValueError, match="file says sha256 0{64}"):
        load_model(path)


@pytest.mark.fault(kind="model file (.safetensors)", fault="gallery fingerprint vs file checksum",
                   behaviour="the fingerprint of the loaded model is the stored checksum")
def test_gallery_fingerprint_is_the_stored_checksum(tmp_path):
    path = _saved(tmp_path)
    assert read_checksum(path) == model_fingerprint(load_model(path))


@pytest.mark.fault(kind="model file (.safetensors)", fault="empty / 7 bytes / truncated",
                   behaviour="ValueError naming the file (not a safetensors file)")
@pytest.mark.parametrize("cut", [0, 7, -100])
def test_truncated_model_file(tmp_path, cut):
    path = _saved(tmp_path)
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(ValueError, match=r"model.safetensors is not a safetensors file"):
        load_model(path)


@pytest.mark.fault(kind="model file (.safetensors)", fault="config metadata not JSON / a list / "
                   "input_size missing a value", behaviour="ValueError naming the file and the "
                   "metadata key")
@pytest.mark.parametrize("config", ["{not json", "[1, 2]",
                                    '{"name": "mobilefacenet", "input_size": [112], '
                                    '"embedding_dim": 8}'],
                         ids=["not-json", "a-list", "input-size-of-one"])
def test_garbage_config_metadata(tmp_path, config):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(safetensors_bytes({"w": torch.zeros(2)}, metadata={METADATA_KEY: config}))
    with pytest.raises(ValueError, match=rf"bad.safetensors: metadata '{METADATA_KEY}' is not a "
                                         "valid model config"):
        load_model(path)
