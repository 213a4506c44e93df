"""The loop with a tiny backbone: exact resume, NaN stop, bad input before training."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset
from train_helpers import TinyCosFace, TinyNet

from marginface.train.checkpoint import list_checkpoints, load_checkpoint
from marginface.train.config import load_config
from marginface.train.engine import Trainer, TrainingDiverged
from marginface.train.summary import RunSummary

BASE = [
    "model.input_size=[32, 32]",
    "data.synthetic.num_identities=8",
    "data.synthetic.images_per_identity=6",
    "train.batch_size=16",
    "train.log_interval=2",
    "train.progress=false",
    "optimizer.lr=0.05",
    "schedule.warmup_steps=2",
    "eval.sets=[]",
]


def tiny_trainer(run_dir, overrides=(), *, resume=False, **kwargs):
    config = None if resume else load_config(None, [*BASE, *overrides])
    torch.manual_seed(123)
    return Trainer(config, run_dir, model=TinyNet(), head=TinyCosFace(16, 8), resume=resume,
                   **kwargs)


def states(trainer):
    return {**{f"m.{k}": v for k, v in trainer.model.state_dict().items()},
            **{f"h.{k}": v for k, v in trainer.classifier.head.state_dict().items()}}


def assert_exact_resume(tmp_path, steps, stop_after=3):
    """Train ``steps`` whole and with a stop + resume at ``stop_after``: bit-identical weights.
    Returns the uninterrupted trainer."""
    whole = tiny_trainer(tmp_path / "whole", steps)
    whole.fit()
    tiny_trainer(tmp_path / "halves", steps).fit(stop_after=stop_after)
    resumed = tiny_trainer(tmp_path / "halves", resume=True)
    resumed.fit()
    a, b = states(whole), states(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    return whole


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_exact_resume(tmp_path, optimizer):
    steps = ["train.max_steps=8", "train.checkpoint_interval=4", f"optimizer.name={optimizer}",
             "train.grad_clip=5.0"]
    if optimizer == "adamw":
        steps.append("optimizer.lr=1e-3")
    whole = tiny_trainer(tmp_path / "a", steps)
    whole.fit()
    half = tiny_trainer(tmp_path / "b", steps)
    assert half.fit(stop_after=4) == RunSummary(steps=4, interrupted=True)
    assert [s for s, _ in list_checkpoints(tmp_path / "b" / "checkpoints")] == [4]
    resumed = tiny_trainer(tmp_path / "b", resume=True)
    assert resumed.step == 4
    resumed.fit()
    a, b = states(whole), states(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the resumed run's metrics carry each step once, as in the uninterrupted run
    rows_a = (tmp_path / "a" / "metrics.csv").read_text().splitlines()
    rows_b = (tmp_path / "b" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[:3] for r in rows_a] == [r.split(",")[:3] for r in rows_b]


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path):
    trainer = tiny_trainer(tmp_path, ["train.max_steps=10", "train.checkpoint_interval=3"])
    trainer.model.poison_after = 7  # the 8th forward pass gives NaN embeddings
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(TrainingDiverged, match=r"at step 8.*step_00000006\.ckpt") as info:
        trainer.fit()
    assert "non-finite" in str(info.value)
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [3, 6]
    good = load_checkpoint(tmp_path / "checkpoints" / "step_00000006.ckpt")
    assert good["step"] == 6
    assert all(torch.isfinite(v).all() for v in good["model"].values() if v.is_floating_point())
    assert trainer.step == 7 and any(
        not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def test_nan_loss_names_the_step(tmp_path):
    trainer = tiny_trainer(tmp_path, ["train.max_steps=5", "train.checkpoint_interval=0"])
    original = trainer.classifier.head.loss
    calls = []

    def loss(e, y):
        calls.append(1)
        value = original(e, y)
        return value * float("inf") if len(calls) == 3 else value

    trainer.classifier.head.loss = loss
    with pytest.raises(TrainingDiverged, match=r"non-finite loss \(\w+\) at step 3.*none"):
        trainer.fit()


class Listed(Dataset):
    def __init__(self, labels, num_classes=None):
        self.labels = labels
        if num_classes is not None:
            self.num_classes = num_classes

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return torch.zeros(3, 32, 32, dtype=torch.uint8), self.labels[i]


@pytest.mark.parametrize(
    ("dataset", "overrides", "message"),
    [
        (Listed([]), [], "empty"),
        (Listed([0, 0, 2, 2] * 8, num_classes=3), [], "identities have no images .*first: 1"),
        (Listed([0, 1, 2, 3] * 8), ["data.num_classes=3"], "label 3 does not fit num_classes=3"),
        (Listed([0, 1] * 4), [], "batch_size=16 is larger than the dataset"),
        (Listed([0, 1] * 16), ["train.batch_size=15"], None),
    ],
)
def test_bad_datasets_fail_before_training(tmp_path, dataset, overrides, message):
    config = load_config(None, [*BASE, "train.max_steps=2", *overrides])
    if message is None:  # a fine dataset: the head size must match it
        with pytest.raises(ValueError, match="num_classes=8 but the dataset has 2"):
            Trainer(config, tmp_path, model=TinyNet(), head=TinyCosFace(16, 8),
                    train_dataset=dataset)
        return
    with pytest.raises(ValueError, match=message):
        Trainer(config, tmp_path, model=TinyNet(), head=TinyCosFace(16, 8), train_dataset=dataset)
    assert not (tmp_path / "checkpoints").exists()


def test_fp16_needs_cuda(tmp_path):
    with pytest.raises(ValueError, match="fp16.*needs CUDA"):
        tiny_trainer(tmp_path, ["train.max_steps=2", "train.precision=fp16"])


def test_bf16_autocast_trains(tmp_path):
    trainer = tiny_trainer(tmp_path, ["train.max_steps=3", "train.precision=bf16",
                                      "train.checkpoint_interval=0"])
    summary = trainer.fit()
    assert summary.steps == 3 and summary.final_loss == summary.final_loss


def test_training_step_uses_the_fused_loss(tmp_path, monkeypatch):
    """The trainer's classifier loss is the blockwise fused path, not the unfused logits."""
    from marginface.heads import base

    calls = []
    original = base.fused_cross_entropy

    def spy(*args, **kwargs):
        calls.append(args[3])  # the LogitSpec the fused loss ran with
        return original(*args, **kwargs)

    monkeypatch.setattr(base, "fused_cross_entropy", spy)
    config = load_config(None, [*BASE, "train.max_steps=2", "head.name=arcface"])
    trainer = Trainer(config, tmp_path / "run", model=TinyNet())
    monkeypatch.setattr(trainer.classifier.head, "unfused_loss",
                        lambda *a: pytest.fail("the trainer used the unfused loss"))
    trainer.fit()
    assert len(calls) == 2 and all(spec.kind == "margin" and spec.m2 == 0.5 for spec in calls)


@pytest.mark.parametrize("head_name", ["curricularface", "adaface", "elasticface_arc",
                                       "elasticface_cos_plus"])
def test_exact_resume_of_a_head_with_moving_state(tmp_path, head_name):
    """t, the norm statistics and the margin generator are checkpointed and resume exactly."""
    from marginface.heads import create_head

    steps = ["train.max_steps=6", "train.checkpoint_interval=3"]

    def trainer(run_dir, resume=False):
        config = None if resume else load_config(None, [*BASE, *steps])
        torch.manual_seed(123)
        return Trainer(config, run_dir, model=TinyNet(), resume=resume,
                       head=create_head(head_name, 16, 8, scale=16.0))

    whole = trainer(tmp_path / "a")
    whole.fit()
    trainer(tmp_path / "b").fit(stop_after=3)
    resumed = trainer(tmp_path / "b", resume=True)
    resumed.fit()
    a, b = states(whole), states(resumed)
    moving = [k for k in a if k.startswith("h.") and k != "h.weight"]
    assert moving and all(not torch.equal(a[k], create_head(head_name, 16, 8).state_dict()[
        k[2:]]) for k in moving)  # the state did move
    for key in a:
        assert torch.equal(a[key], b[key]), key
