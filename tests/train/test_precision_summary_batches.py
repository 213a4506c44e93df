"""The trainer's helpers: precision checks, the run summary's model file, positioned batches."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from marginface.train.batches import iterate_batches, make_loader
from marginface.train.precision import autocast_context, check_precision, make_grad_scaler
from marginface.train.sampling import EpochBatchSampler
from marginface.train.summary import count_skipped, save_model_file


def test_precision_checks_and_contexts():
    cpu = torch.device("cpu")
    with pytest.raises(ValueError, match="fp16' needs CUDA"):
        check_precision("fp16", cpu)
    with pytest.raises(ValueError, match="train.precision must be one of"):
        check_precision("fp8", cpu)
    check_precision("bf16", cpu)
    lin = nn.Linear(4, 4)
    with autocast_context("bf16", cpu):
        assert lin(torch.randn(2, 4)).dtype == torch.bfloat16
    with autocast_context("fp32", cpu):
        assert lin(torch.randn(2, 4)).dtype == torch.float32
    assert not make_grad_scaler("bf16").is_enabled()


def test_model_file_and_skipped_count(tmp_path):
    path = save_model_file(nn.Linear(3, 2), tmp_path)  # not a marginface model: a state dict
    assert path.name == "model.pt" and set(torch.load(path)) == {"weight", "bias"}
    assert count_skipped(["a.jpg", "b.jpg"]) == 2 and count_skipped(3) == 3
    assert count_skipped(None) == 0


def test_batches_start_at_the_current_step_and_stop_at_the_total():
    data = TensorDataset(torch.arange(10).float(), torch.arange(10))
    sampler = EpochBatchSampler(10, 4, seed=0)

    def run(start, total):
        step = [start]
        seen = []
        loader = make_loader(data, sampler, num_workers=0, pin_memory=False)
        for images, _labels, flips, _draws in iterate_batches(
                loader, sampler, num_images=10, seed=0, flip=True,
                current_step=lambda: step[0], total_steps=total):
            assert flips is not None and flips.shape == images.shape[:1]
            seen.append(images.tolist())
            step[0] += 1
        return seen

    whole = run(0, 5)
    assert len(whole) == 5
    assert run(3, 5) == whole[3:]  # a resumed run sees the same batches
