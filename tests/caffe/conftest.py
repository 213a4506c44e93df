"""Fixtures for the Caffe tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from marginface.caffe.layer_types.norm import BatchNorm
from marginface.caffe.net import CaffeNet


@pytest.fixture
def library():
    """``marginface.caffe.margin_layers`` (the seed article's layers as modules)."""
    import marginface.caffe.margin_layers as module

    return module


@pytest.fixture
def caffe_dir(shared_dir: Path) -> Path:
    return shared_dir / "caffe"


def _as_if_trained(net: CaffeNet) -> CaffeNet:
    """Give every BatchNorm the statistics of a trained layer (mean 0, variance 1).

    A freshly built TEST net has Caffe's zero blobs, i.e. mean 0 and variance 0, which divides by
    sqrt(eps) at every layer; real TEST nets load their statistics from a .caffemodel.
    """
    with torch.no_grad():
        for module in net.layers:
            if isinstance(module, BatchNorm) and module.ready:
                module.mean.zero_()
                module.variance.fill_(1.0)
                module.scale_factor.fill_(1.0)
    return net


@pytest.fixture
def as_if_trained():
    return _as_if_trained


@pytest.fixture
def one_thread():
    """Run a test on one intra-op thread: on a shared, oversubscribed CPU (the test machines run
    several jobs on 2 cores) two spinning threads made SphereNet-20 steps 4x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
