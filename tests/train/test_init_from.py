"""model.init_from / --init, train.freeze_backbone_steps, and marginface import-weights."""

from __future__ import annotations

import pytest
import torch

from marginface.cli.main import main
from marginface.models import create_model, load_model, save_model
from marginface.train.config import load_config
from marginface.train.engine import Trainer

SMALL = dict(input_size=(32, 32), embedding_dim=16, width=0.25)
BASE = ["model.name=mobilefacenet", "model.input_size=[32, 32]", "model.embedding_dim=16",
        "model.options={width: 0.25}", "data.synthetic.num_identities=6",
        "data.synthetic.images_per_identity=4", "train.batch_size=8", "train.progress=false",
        "eval.sets=[]", "train.checkpoint_interval=0", "optimizer.lr=0.05"]


@pytest.fixture
def model_file(tmp_path):
    torch.manual_seed(7)
    model = create_model("mobilefacenet", **SMALL)
    for module in model.modules():  # BN statistics that differ from a fresh model's
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
    path = tmp_path / "pretrained.safetensors"
    save_model(model, path, std=(64.0,) * 3)
    return path


def _trainer(run_dir, *extra):
    return Trainer(load_config(None, [*BASE, *extra]), run_dir)


def test_init_from_loads_backbone_and_its_preprocessing(tmp_path, model_file):
    trainer = _trainer(tmp_path / "run", "train.max_steps=1", f"model.init_from={model_file}")
    source = load_model(model_file)
    for key, value in source.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[key], value), key
    assert trainer.preprocessing.std == (64.0,) * 3
    assert trainer.classifier.head.weight.shape == (6, 16)  # a new head for the new identities


@pytest.mark.parametrize("override, theirs, ours", [
    ("model.input_size=[48, 32]", "32x32 16-d", "48x32 16-d"),
    ("model.embedding_dim=32", "32x32 16-d", "32x32 32-d"),
    ("model.options={width: 0.5}", "{'width': 0.25}", "{'width': 0.5}"),
])
def test_init_from_mismatch_names_both_before_training(tmp_path, model_file, override, theirs,
                                                        ours):
    with pytest.raises(ValueError, match="model.init_from") as error:
        _trainer(tmp_path / "run", "train.max_steps=1", f"model.init_from={model_file}", override)
    assert theirs in str(error.value) and ours in str(error.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_init_from_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.init_from: model file"):
        _trainer(tmp_path / "run", "train.max_steps=1", f"model.init_from={tmp_path / 'no'}")


def test_freeze_backbone_steps_trains_the_head_alone_then_everything(tmp_path, model_file):
    steps = ["train.max_steps=4", "train.freeze_backbone_steps=2",
             f"model.init_from={model_file}", "train.checkpoint_interval=2"]
    trainer = _trainer(tmp_path / "run", *steps)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    head_before = trainer.classifier.head.weight.detach().clone()
    trainer.fit(stop_after=2)
    for key, value in trainer.model.state_dict().items():  # weights and BN statistics
        assert torch.equal(value, before[key]), key
    assert not torch.equal(trainer.classifier.head.weight, head_before)
    resumed = Trainer(None, tmp_path / "run", resume=True)  # from the end of the frozen phase
    resumed.fit()
    assert resumed.model.training
    assert not torch.equal(resumed.model.state_dict()["conv1.conv.weight"],
                           before["conv1.conv.weight"])
    whole = _trainer(tmp_path / "whole", *steps)  # the same run without the interruption
    whole.fit()
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_cli_init_and_its_refusal_with_resume(tmp_path, model_file, capsys):
    args = ["train", "--out", str(tmp_path / "run"), "--init", str(model_file),
            *[f"--set={o}" for o in [*BASE, "train.max_steps=1"]]]
    assert main(args) == 0
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert saved.model.init_from == str(model_file)
    assert main(["train", "--resume", str(tmp_path / "run"), "--init", str(model_file)]) == 2
    assert "--init starts a new run" in capsys.readouterr().err


def test_find_state_dict_unwraps_and_names_keys():
    from marginface.models.import_weights import find_state_dict

    tensors = {"a": torch.zeros(1)}
    assert find_state_dict(tensors) is tensors
    assert find_state_dict({"epoch": 3, "net_state_dict": tensors}) is tensors
    assert find_state_dict({"weights": tensors}, key="weights") is tensors
    with pytest.raises(ValueError, match=r"no state dict found .*'epoch'"):
        find_state_dict({"epoch": 3, "other": 1})
    with pytest.raises(ValueError, match="has no key 'nope'"):
        find_state_dict(tensors, key="nope")


def test_import_weights_cli_dry_run_and_write(tmp_path, capsys):
    torch.manual_seed(5)
    model = create_model("mobilefacenet", input_size=(112, 96), embedding_dim=128)
    foreign = {f"t{i:03d}" + (".num_batches_tracked" if k.endswith("num_batches_tracked") else ""):
               v.clone() for i, (k, v) in enumerate(model.state_dict().items())}
    ckpt = tmp_path / "foreign.pt"
    torch.save(foreign, ckpt)
    out = tmp_path / "m.safetensors"
    assert main(["import-weights", str(ckpt), "--model", "mobilefacenet", "--input-size",
                 "112x96", "--dry-run", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "dry run, nothing copied" in text and "t000" in text and not out.exists()
    assert main(["import-weights", str(ckpt), "--model", "mobilefacenet", "--input-size",
                 "112x96", "--std", "128", "-o", str(out)]) == 0
    loaded = load_model(out)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert loaded.config.input_size == (112, 96) and loaded.config.preprocessing.std == (128.0,) * 3
    assert main(["import-weights", str(ckpt), "--model", "mobilefacenet", "--input-size",
                 "112x112", "-o", str(out)]) == 2
    assert "does not fit model tensor" in capsys.readouterr().err


@pytest.mark.shared
def test_import_weights_casia_checkpoint(shared_dir, tmp_path, capsys):
    """The shared CASIA MobileFaceNet through the CLI gives the acceptance test's model."""
    from marginface.models import import_state_dict

    ckpt = shared_dir / "models" / "mobilefacenet-casia" / "068.ckpt"
    out = tmp_path / "casia.safetensors"
    assert main(["import-weights", str(ckpt), "--model", "mobilefacenet", "--input-size",
                 "112x96", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "linear7.conv.weight" in text and "dry run" in text
    assert main(["import-weights", str(ckpt), "--model", "mobilefacenet", "--input-size",
                 "112x96", "-o", str(out)]) == 0
    reference = create_model("mobilefacenet", input_size=(112, 96), embedding_dim=128)
    import_state_dict(reference, torch.load(ckpt, map_location="cpu",
                                           weights_only=False)["net_state_dict"])
    imported = load_model(out)
    x = torch.randn(2, 3, 112, 96)
    assert torch.equal(imported(x), reference.eval()(x))
