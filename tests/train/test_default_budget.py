"""`marginface train` without a config and a step count: the embedded default at the demo's
budget (issue #16), not the error "train.max_steps or train.epochs must be given"."""

from __future__ import annotations

import pytest
import yaml

from marginface.cli.main import main
from marginface.train.config import load_config
from marginface.train.launch import DEMO_MAX_STEPS, DEMO_OVERRIDES, resolve_config

TINY = ["model.input_size=[32, 32]", "model.embedding_dim=16", "model.options={width: 0.25}",
        "data.synthetic.num_identities=4", "data.synthetic.images_per_identity=2",
        "data.synthetic.pair_identities=4", "data.synthetic.num_pairs=20", "train.batch_size=4",
        "train.progress=false", "train.threads=1", "train.checkpoint_interval=0",
        "eval.batch_size=40"]


def test_default_budget_is_the_demos():
    assert f"train.max_steps={DEMO_MAX_STEPS}" in DEMO_OVERRIDES and DEMO_MAX_STEPS == 150
    config = resolve_config(None)
    assert config.train.max_steps == DEMO_MAX_STEPS and config.data.kind == "synthetic"
    # everything else is the embedded default, as load_config gives it with that one step count
    assert config == load_config(None, [f"train.max_steps={DEMO_MAX_STEPS}"])


@pytest.mark.parametrize(("overrides", "max_steps", "steps", "epochs"), [
    (["train.epochs=2"], None, None, 2),
    (["train.max_steps=7"], None, 7, None),
    (["train={max_steps: 9}"], None, 9, None),
    ([], 5, 5, None),
])
def test_a_given_length_wins(overrides, max_steps, steps, epochs):
    config = resolve_config(None, overrides, max_steps)
    assert (config.train.max_steps, config.train.epochs) == (steps, epochs)


def test_a_config_file_must_still_give_its_length(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 1\n")
    with pytest.raises(ValueError, match="train.max_steps or train.epochs must be given"):
        resolve_config(path)


def test_train_without_config_runs_the_default(tmp_path, monkeypatch):
    """End to end through the CLI (tiny model; stopped after 2 of the 150 steps)."""
    from marginface.train import launch

    real = launch.Trainer.fit
    monkeypatch.setattr(launch.Trainer, "fit", lambda self, stop_after=None: real(self,
                                                                                  stop_after=2))
    args = ["train", "--out", str(tmp_path / "run")]
    for item in TINY:
        args += ["--set", item]
    assert main(args) == 0
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["train"]["max_steps"] == DEMO_MAX_STEPS
    assert (tmp_path / "run" / "checkpoints").is_dir()
