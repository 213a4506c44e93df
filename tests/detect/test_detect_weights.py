"""The mtcnn package's weights: located without importing the package; bad weights named."""

from __future__ import annotations

import sys

import pytest
import torch

from marginface.detect import FaceDetector, mtcnn_package_files, read_mtcnn_package
from marginface.detect.networks import NETWORKS


def test_package_files_found_without_importing_tensorflow_package():
    files = mtcnn_package_files()
    assert set(files) == {"pnet", "rnet", "onet"}
    assert all(p.is_file() and p.suffix == ".lz4" for p in files.values())
    assert "mtcnn" not in sys.modules  # its __init__ would import TensorFlow


def test_state_dict_covers_every_parameter_with_its_shape():
    state = read_mtcnn_package()
    expected = {f"{n}.{k}": v.shape for n, c in NETWORKS.items()
                for k, v in c().state_dict().items()}
    assert {k: v.shape for k, v in state.items()} == expected


def test_wrong_shape_names_layer_and_source():
    state = read_mtcnn_package()
    state["rnet.fc.weight"] = torch.zeros(128, 575)
    with pytest.raises(ValueError, match=r"my-weights.*rnet\.fc\.weight.*\(128, 575\)"):
        FaceDetector(state, source="my-weights")
    del state["rnet.fc.weight"]
    with pytest.raises(ValueError, match=r"no weights for layer rnet\.fc\.weight"):
        FaceDetector(state, source="my-weights")


def test_missing_file_names_network_and_path(tmp_path):
    files = {name: tmp_path / f"{name}.lz4" for name in ("pnet", "rnet", "onet")}
    with pytest.raises(FileNotFoundError, match=r"pnet.*pnet\.lz4"):
        read_mtcnn_package(files)
    files["pnet"].write_bytes(b"not a joblib file")
    with pytest.raises(ValueError, match=r"pnet\.lz4"):
        read_mtcnn_package(files)
