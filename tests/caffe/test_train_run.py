"""``marginface train --caffe-net NET --caffe-solver SOLVER`` (marginface.caffe.train_run)."""

from __future__ import annotations

import csv

import pytest
import torch

from marginface.caffe import load_caffemodel, load_net
from marginface.cli.main import main
from marginface.train.checkpoint import load_checkpoint

NET = """name: "tiny"
layer { name: "data" type: "ImageData" top: "data" top: "label"
  include { phase: TRAIN }
  transform_param { scale: 0.0078125 mean_value: 127.5 mirror: true }
  image_data_param { source: "list.txt" batch_size: 16 } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  convolution_param { num_output: 16 kernel_size: 3 stride: 2 pad: 1
    weight_filler { type: "msra" } } }
layer { name: "relu1" type: "PReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc5" type: "InnerProduct" bottom: "conv1" top: "fc5"
  inner_product_param { num_output: 32 weight_filler { type: "xavier" } } }
layer { name: "fc6" type: "InnerProduct" bottom: "fc5" top: "fc6"
  inner_product_param { num_output: 8 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc6" bottom: "label" top: "loss" }
"""
SOLVER = """net: "net.prototxt"
base_lr: 0.01
lr_policy: "step"
gamma: 0.5
stepsize: 40
momentum: 0.9
weight_decay: 0.0005
max_iter: 80
display: 10
snapshot: 30
snapshot_prefix: "snapshots/tiny"
solver_mode: CPU
"""
# 8 synthetic identities (the embedded default data) rendered at 16x16, one thread
CONFIG = """seed: 3
model: {input_size: [16, 16]}
data: {synthetic: {num_identities: 8, images_per_identity: 6}}
train: {progress: false, threads: 1}
"""


@pytest.fixture
def files(tmp_path):
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text(SOLVER)
    (tmp_path / "config.yaml").write_text(CONFIG)
    return tmp_path


def test_cli_trains_a_caffe_net_with_its_solver_on_the_synthetic_data(files, one_thread):
    run = files / "run"
    code = main(["train", "--caffe-net", str(files / "net.prototxt"), "--caffe-solver",
                 str(files / "solver.prototxt"), "--config", str(files / "config.yaml"),
                 "--out", str(run)])
    assert code == 0
    with (run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == list(range(10, 81, 10))  # solver display 10
    rates = [float(r["lr"]) for r in rows]
    assert rates[:4] == [0.01] * 4 and rates[4:] == [0.005] * 4  # step policy, stepsize 40
    losses = [float(r["loss"]) for r in rows]
    assert losses[-1] < 0.5 * losses[0], losses
    # solver snapshot 30 -> checkpoints at 30, 60 and the end (keep_checkpoints 3)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["step_00000030.ckpt", "step_00000060.ckpt", "step_00000080.ckpt"]
    state = load_checkpoint(run / "checkpoints" / "step_00000080.ckpt")
    assert state["iteration"] == 80 and "optimizer" in state
    assert (run / "config.yaml").is_file() and (run / "solver.prototxt").is_file()
    # the final weights as a Caffe snapshot, equal to the last checkpoint
    fresh = load_net(files / "net.prototxt", "TRAIN", input_shapes={"data": (16, 3, 16, 16)})
    load_caffemodel(fresh, run / "tiny_iter_80.caffemodel", strict=True)
    for key, value in fresh.state_dict().items():
        torch.testing.assert_close(value, state["state_dict"][key])


def test_max_steps_overrides_the_solver_and_errors(files, one_thread, capsys):
    run = files / "short"
    code = main(["train", "--caffe-net", str(files / "net.prototxt"), "--caffe-solver",
                 str(files / "solver.prototxt"), "--config", str(files / "config.yaml"),
                 "--out", str(run), "--max-steps", "5"])
    assert code == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000005.ckpt"]
    assert main(["train", "--caffe-net", str(files / "net.prototxt")]) == 2
    assert "--caffe-net and --caffe-solver go together" in capsys.readouterr().err
    (files / "no_data.prototxt").write_text(NET.split('layer { name: "conv1"')[0].replace(
        "ImageData", "Input"))
    assert main(["train", "--caffe-net", str(files / "no_data.prototxt"), "--caffe-solver",
                 str(files / "solver.prototxt"), "--config", str(files / "config.yaml"),
                 "--out", str(files / "bad")]) == 2
    assert "expected one Data or ImageData layer" in capsys.readouterr().err
