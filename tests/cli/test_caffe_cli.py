"""``marginface caffe summary``."""

from __future__ import annotations

import pytest

from marginface.caffe.summary import parse_input_shape
from marginface.cli.main import main

NET = '''name: "cli" input: "data"
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 8 kernel_size: 3 } }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
'''


def test_summary_prints_layers_shapes_and_counts(tmp_path, capsys):
    path = tmp_path / "net.prototxt"
    path.write_text(NET)
    assert main(["caffe", "summary", str(path), "--input-shape", "data=1,3,9,9"]) == 0
    out = capsys.readouterr().out
    assert "conv   Convolution" in out and "conv 1x8x7x7" in out and "pool 1x8x4x4" in out
    assert "total learnable parameters: 224 " in out  # 8*3*3*3 weights + 8 biases
    assert main(["caffe", "summary", str(path), "--phase", "TEST"]) == 0
    assert "conv ?" in capsys.readouterr().out  # no input shape: unknown, said so


def test_summary_errors(tmp_path, capsys):
    assert main(["caffe", "summary", str(tmp_path / "none.prototxt")]) == 2
    assert "none.prototxt" in capsys.readouterr().err
    bad = tmp_path / "bad.prototxt"
    bad.write_text("layer {\n  name: \n}")
    assert main(["caffe", "summary", str(bad)]) == 2
    assert "bad.prototxt:3:1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="NAME=D1,D2"):
        parse_input_shape("data=1,x")


@pytest.mark.shared
def test_summary_of_mobilefacenet(shared_dir, capsys):
    net = shared_dir / "caffe" / "mobilefacenet" / "deploy_revised.prototxt"
    assert main(["caffe", "summary", str(net), "--phase", "TEST"]) == 0
    out = capsys.readouterr().out
    assert "fc5 1x128" in out and "(0.999 M)" in out
