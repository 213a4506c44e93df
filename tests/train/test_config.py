"""Config loading: typed fields, unknown keys, wrong types, --set overrides."""

from __future__ import annotations

import pytest

from marginface.train.config import (
    Config,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)


def test_yaml_file_and_overrides(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("model:\n  name: mobilefacenet\n  input_size: [112, 96]\n"
                    "head:\n  name: arcface\n  margin: 0.5\ntrain:\n  max_steps: 100\n")
    c = load_config(path, ["optimizer.lr=1e-3", "train.batch_size=32",
                           "head.options={detach_margin: true}", "data.flip=false",
                           "schedule.milestones=[10, 20]"])
    assert isinstance(c, Config)
    assert c.model.input_size == (112, 96)
    assert c.head.name == "arcface" and c.head.margin == 0.5
    assert c.optimizer.lr == pytest.approx(1e-3) and isinstance(c.optimizer.lr, float)
    assert c.train.batch_size == 32 and c.data.flip is False
    assert c.schedule.milestones == [10, 20]
    assert c.head.options == {"detach_margin": True}


def test_round_trip(tmp_path):
    c = load_config(None, ["train.max_steps=5", "eval.sets=[{name: a, kind: synthetic}]"])
    save_config(c, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == c
    assert config_from_dict(config_to_dict(c)) == c


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.bogus=1", "unknown config key 'train.bogus'"),
        ("bogus=1", "unknown config key 'bogus'"),
        ("eval.sets=[{name: a, colour: red}]", "unknown config key 'eval.sets[0].colour'"),
        ("train.batch_size=abc", "train.batch_size: expected an int, got 'abc'"),
        ("train.batch_size=1.5", "train.batch_size: expected an int"),
        ("optimizer.lr=true", "optimizer.lr: expected a number, got True"),
        ("data.flip=1", "data.flip: expected a bool"),
        ("model.input_size=[112]", "model.input_size: expected 2 items"),
        ("head.name=cosine", "head.name: expected one of"),
        ("train.precision=fp8", "train.precision: expected one of"),
        ("optimizer=3", "optimizer: expected a mapping"),
        ("train.batch_size=0", "train.batch_size: invalid value 0"),
        ("train.sample_rate=1.5", "train.sample_rate: invalid value 1.5"),
    ],
)
def test_bad_keys_and_types_name_the_path(override, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(None, ["train.max_steps=10", override])


def test_length_is_required_and_paths_checked(tmp_path):
    with pytest.raises(ValueError, match="max_steps or train.epochs"):
        load_config(None, [])
    with pytest.raises(ValueError, match="data.path is required"):
        load_config(None, ["train.max_steps=1", "data.kind=folder"])
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="top level must be a mapping"):
        load_config(tmp_path / "list.yaml")


def test_set_syntax_errors():
    with pytest.raises(ValueError, match="expects key.sub=value"):
        apply_overrides({}, ["train.max_steps"])
    with pytest.raises(ValueError, match="malformed key"):
        apply_overrides({}, ["train..x=1"])
    with pytest.raises(ValueError, match="train is not a mapping"):
        apply_overrides({"train": 3}, ["train.max_steps=1"])
    raw = apply_overrides({}, ["a.b.c=[1, 2]", "a.d=null", "e=hello"])
    assert raw == {"a": {"b": {"c": [1, 2]}, "d": None}, "e": "hello"}
