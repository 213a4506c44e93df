"""MTCNN from the shared Caffe det1-det3 files agrees with the mtcnn package's weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from marginface.caffe.mtcnn import read_mtcnn_caffe
from marginface.detect import FaceDetector, read_mtcnn_package
from marginface.detect.boxes import pairwise_overlap


@pytest.fixture(scope="module")
def caffe_state(shared_dir):
    return read_mtcnn_caffe(shared_dir / "caffe" / "mtcnn")


@pytest.mark.shared
def test_caffe_arrays_map_onto_the_package_arrays(caffe_state):
    package = read_mtcnn_package()
    assert set(caffe_state) == set(package)
    for key, value in package.items():
        assert caffe_state[key].shape == value.shape, key
        assert torch.allclose(caffe_state[key], value, atol=1e-6), key


@pytest.mark.shared
def test_both_sources_detect_the_same_faces_on_lfw(caffe_state, shared_dir):
    images = sorted((shared_dir / "data" / "lfw" / "images").glob("B*/*.jpg"))[::50][:12]
    from_caffe = FaceDetector(caffe_state, source="det1-det3.caffemodel")(images)
    from_package = FaceDetector()(images)
    faces = 0
    for got, want in zip(from_caffe, from_package, strict=True):
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            iou = pairwise_overlap(torch.tensor([a.box]), torch.tensor([b.box]))[0, 0]
            assert iou >= 0.99
            assert np.abs(a.landmarks - b.landmarks).max() <= 0.5
            faces += 1
    assert faces >= len(images)


def test_missing_caffemodel_names_network_and_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"pnet.*det1\.caffemodel"):
        read_mtcnn_caffe(tmp_path)
