"""train_caffe_net: Caffe's iteration (iter_size, lr policy, multipliers) and snapshots."""

from __future__ import annotations

import pytest
import torch

from marginface.caffe import load_net
from marginface.caffe.train import snapshot_path, train_caffe_net

NET = '''
name: "small" input: "data" input_shape { dim: 4 dim: 2 dim: 5 dim: 5 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 0 }
  convolution_param { num_output: 3 kernel_size: 3 weight_filler { type: "xavier" }
    bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc"
  param { lr_mult: 2 decay_mult: 0 } param { lr_mult: 1 decay_mult: 0 }
  inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
'''


@pytest.fixture
def solver_module():
    import marginface.caffe.solver as module

    return module


def _batch(seed: int, n: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"data": torch.randn(n, 2, 5, 5, generator=g), "label": torch.arange(n) % 4}


def test_iter_size_accumulates_like_one_big_batch(solver_module):
    solver = {"base_lr": 0.1, "lr_policy": "fixed", "momentum": 0.9, "weight_decay": 1e-3,
              "max_iter": 1}
    a, b = _batch(1), _batch(2)
    big = {k: torch.cat([a[k], b[k]]) for k in a}
    net1 = load_net(NET)
    net2 = load_net(NET)
    net2.load_state_dict(net1.state_dict())
    train_caffe_net(net1, {**solver, "iter_size": 2}, [a, b], progress=False)
    train_caffe_net(net2, solver, [big], progress=False)
    for p, q in zip(net1.parameters(), net2.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_learning_rate_policy_multipliers_and_frozen_blobs(solver_module):
    net = load_net(NET)
    bias = net.layer("conv").caffe_blobs()[1].detach().clone()
    fc_w = net.layer("fc").caffe_blobs()[0].detach().clone()
    solver = {"base_lr": 0.05, "lr_policy": "step", "gamma": 0.5, "stepsize": 2,
              "max_iter": 3, "momentum": 0.0, "weight_decay": 0.0}
    # Record the gradient and parameter of fc's weight around the last iteration.
    grads = []
    net.layer("fc").caffe_blobs()[0].register_hook(lambda g: grads.append(g.clone()))
    before_last = []
    batches = [_batch(i) for i in range(3)]

    def feed():
        for i, batch in enumerate(batches):
            if i == 2:
                before_last.append(net.layer("fc").caffe_blobs()[0].detach().clone())
            yield batch

    losses = train_caffe_net(net, solver, feed(), progress=False)
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert torch.equal(net.layer("conv").caffe_blobs()[1], bias)  # lr_mult 0: frozen
    assert not torch.equal(net.layer("fc").caffe_blobs()[0], fc_w)
    # iteration 2 of "step": base_lr * gamma^(2 // 2) = 0.025; fc weight lr_mult 2 -> 0.05
    step = before_last[0] - net.layer("fc").caffe_blobs()[0].detach()
    torch.testing.assert_close(step, 0.05 * grads[-1])


def test_snapshots_are_written_atomically(tmp_path, solver_module):
    net = load_net(NET)
    solver = {"base_lr": 0.01, "lr_policy": "fixed", "max_iter": 4, "snapshot": 2,
              "snapshot_prefix": "models/small"}
    losses = train_caffe_net(net, solver, [_batch(0)], progress=False, snapshot_dir=tmp_path)
    assert len(losses) == 4
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["small_iter_2.pt", "small_iter_4.pt"]  # no temporary files left
    state = torch.load(snapshot_path(tmp_path, "models/small", 4))
    assert state["iteration"] == 4
    for key, value in net.state_dict().items():
        torch.testing.assert_close(state["state_dict"][key], value)


def test_bad_training_input(solver_module):
    net = load_net(NET)
    with pytest.raises(ValueError, match="max_iter must be > 0"):
        train_caffe_net(net, {"base_lr": 0.1, "lr_policy": "fixed"}, [_batch(0)],
                        progress=False)
    with pytest.raises(ValueError, match="batches is empty"):
        train_caffe_net(net, {"base_lr": 0.1, "lr_policy": "fixed"}, [], max_iter=1,
                        progress=False)
    with pytest.warns(UserWarning, match="ran out after 1 iterations"):
        losses = train_caffe_net(net, {"base_lr": 0.1, "lr_policy": "fixed"},
                                 iter([_batch(0)]), max_iter=3, progress=False)
    assert len(losses) == 1
