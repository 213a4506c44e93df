"""Hostile training configs: duplicate keys, non-finite numbers, margins that make no sense,
bad bytes and bad YAML are refused before training, naming the file, line and key."""

from __future__ import annotations

import math
import re

import pytest
from hostile_cli_helpers import one_line_error, run_cli

from marginface.errors import ConfigError
from marginface.heads import ArcFace, CosFace, create_head
from marginface.train.config import load_config

STEPS = ["train.max_steps=1"]


def _write(tmp_path, text: str | bytes):
    path = tmp_path / "cfg.yaml"
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


@pytest.mark.fault(kind="config (YAML)", fault="duplicate key (top level and nested)",
                   behaviour="ConfigError naming the file, the key and both lines")
@pytest.mark.parametrize(("text", "key", "line", "first"), [
    ("seed: 1\nseed: 2\n", "seed", 2, 1),
    ("optimizer:\n  lr: 0.1\n  momentum: 0.9\n  lr: 0.01\n", "lr", 4, 2),
    ("head: {name: cosface, margin: 0.3, margin: 0.4}\n", "margin", 1, 1),
], ids=["top-level", "nested", "flow-mapping"])
def test_duplicate_keys_are_refused(tmp_path, text, key, line, first):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, STEPS)
    message = str(caught.value)
    assert f"{path}, line {line}" in message
    assert f"duplicate key '{key}' (first at line {first})" in message


@pytest.mark.fault(kind="config (--set)", fault="duplicate key inside a --set flow mapping",
                   behaviour="ConfigError naming --set and the key")
def test_duplicate_key_in_set_override():
    with pytest.raises(ConfigError, match=r"--set head.*duplicate key 'name'"):
        load_config(None, [*STEPS, "head={name: cosface, name: arcface}"])


@pytest.mark.fault(kind="config (YAML)", fault="non-finite float (.inf, -.inf, .nan) anywhere",
                   behaviour="ConfigError naming the dotted key")
@pytest.mark.parametrize(("override", "key"), [
    ("optimizer.lr=.inf", "optimizer.lr"), ("optimizer.lr=.nan", "optimizer.lr"),
    ("optimizer.weight_decay=.inf", "optimizer.weight_decay"),
    ("schedule.min_lr=-.inf", "schedule.min_lr"), ("train.grad_clip=.inf", "train.grad_clip"),
    ("data.augment.scale=.nan", "data.augment.scale"), ("head.scale=.inf", "head.scale"),
    ("optimizer.betas=[0.9, .inf]", "optimizer.betas[1]"),
    ("model.options={width: .inf}", "model.options.width"),
    ("head.options={detach_margin: .nan}", "head.options.detach_margin"),
])
def test_every_float_must_be_finite(override, key):
    with pytest.raises(ConfigError, match=rf"^{key.replace('[', '.').replace(']', '.')}: "
                                          "must be a finite number"):
        load_config(None, [*STEPS, override])


@pytest.mark.fault(kind="config (YAML)", fault="lr: .inf in a YAML file",
                   behaviour="ConfigError naming the file and optimizer.lr")
def test_inf_in_yaml_file_names_file_and_key(tmp_path):
    path = _write(tmp_path, "optimizer:\n  lr: .inf\n")
    with pytest.raises(ConfigError, match=r"cfg\.yaml: optimizer\.lr: must be a finite number"):
        load_config(path, STEPS)


@pytest.mark.fault(kind="config (head)", fault="margin outside the head's valid range",
                   behaviour="ConfigError naming head.margin, the range and why")
@pytest.mark.parametrize(("head", "margin", "needle"), [
    ("cosface", 10.0, "[0, 1)"), ("cosface", 1.0, "[0, 1)"), ("cosface", -0.1, "[0, 1)"),
    ("amsoftmax", 2.0, "[0, 1)"), ("elasticface_cos", 1.5, "[0, 1)"),
    ("arcface", math.pi, "[0, pi/2)"), ("arcface", 1.6, "[0, pi/2)"),
    ("subcenter_arcface", 2.0, "[0, pi/2)"), ("curricularface", 4.0, "[0, pi/2)"),
    ("adaface", 2.0, "margin"),
])
def test_margins_that_make_no_sense(head, margin, needle):
    with pytest.raises(ConfigError) as caught:
        load_config(None, [*STEPS, f"head.name={head}", f"head.margin={margin}"])
    message = str(caught.value)
    assert message.startswith(f"head.margin: {head}: margin must be")
    assert needle in message and repr(margin) in message


@pytest.mark.fault(kind="config (head)", fault="negative or zero scale, bad head option",
                   behaviour="ConfigError naming head.scale / head.options.KEY")
@pytest.mark.parametrize(("override", "needle"), [
    ("head.scale=-30", "head.scale: cosface: scale must be a finite number > 0"),
    ("head.scale=0", "head.scale: cosface: scale must be"),
    ("head.options={detach_margin: 3}", "head.options.detach_margin"),
])
def test_scale_and_options_are_checked_by_the_head(override, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_config(None, [*STEPS, override])


@pytest.mark.fault(kind="head constructor", fault="same ranges as the config",
                   behaviour="the head class declares the range; constructor and config agree")
def test_heads_declare_the_ranges_config_uses():
    assert CosFace.margin_range.contains(0.35) and not CosFace.margin_range.contains(1.0)
    assert ArcFace.margin_range.contains(0.5) and not ArcFace.margin_range.contains(math.pi / 2)
    with pytest.raises(ValueError, match=r"margin must be a cosine margin in \[0, 1\)"):
        create_head("cosface", 4, 3, margin=10.0)
    with pytest.raises(ValueError, match=r"margin must be an angle in radians in \[0, pi/2\)"):
        create_head("arcface", 4, 3, margin=1.6)
    assert load_config(None, [*STEPS, "head.name=arcface", "head.margin=1.5"]).head.margin == 1.5


@pytest.mark.fault(kind="config (YAML)", fault="non-UTF-8 bytes in the config file",
                   behaviour="error naming the file, line and column, not a byte position")
def test_non_utf8_config_names_the_file(tmp_path, capsys):
    path = _write(tmp_path, b"seed: 1\n# caf\xe9\n")
    code, _, err = run_cli(capsys, "train", "--config", path, "--max-steps", "1",
                           "--out", tmp_path / "run")
    assert code == 2
    one_line_error(err, str(path), "line 2, column 6", "not UTF-8", "0xe9")
    assert not (tmp_path / "run").exists()


@pytest.mark.fault(kind="config (YAML)", fault="UTF-8 byte-order mark",
                   behaviour="accepted (the BOM is dropped)")
def test_bom_config_loads(tmp_path):
    path = _write(tmp_path, "\ufeffseed: 3\n".encode())
    assert load_config(path, STEPS).seed == 3


def _cli_case(text, needles, fault, behaviour, id_):
    return pytest.param(text, needles, id=id_, marks=pytest.mark.fault(
        kind="config (YAML) through the CLI", fault=fault, behaviour=behaviour))


@pytest.mark.parametrize(("text", "needles"), [
    _cli_case("optimizer:\n  lr: [0.1\n", ["line 3", "not valid YAML"], "YAML syntax error",
              "exit 2, one line with file, line and column", "syntax"),
    _cli_case("train:\n  max_steps: 1\n  max_steps: 100\n",
              ["line 3", "duplicate key 'max_steps'"], "duplicate key",
              "exit 2, one line naming the key and line", "duplicate"),
    _cli_case("seed: !!python/object/apply:os.system ['echo hi']\n", ["line 1"],
              "a YAML tag that builds a Python object", "refused by the safe loader, one line",
              "python-tag"),
    _cli_case(None, ["is a directory"], "a directory given as --config",
              "exit 2, one line 'is a directory'", "directory"),
])
def test_bad_config_through_cli(tmp_path, capsys, text, needles):
    path = tmp_path if text is None else _write(tmp_path, text)
    code, _, err = run_cli(capsys, "train", "--config", path, "--out", tmp_path / "run")
    assert code == 2
    one_line_error(err, str(path), *needles)
    assert not (tmp_path / "run").exists()


def _bomb() -> str:
    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        name, previous = chr(97 + i), chr(96 + i)
        levels.append(f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]")
    return "model:\n  options:\n" + "".join(f"    {line}\n" for line in levels)


@pytest.mark.fault(kind="config (YAML)", fault="alias bomb ('billion laughs', 9^10 nodes)",
                   behaviour="ConfigError at once, naming the file; nothing expanded")
def test_alias_bomb_is_refused(tmp_path):
    path = _write(tmp_path, _bomb())
    with pytest.raises(ConfigError, match=r"cfg\.yaml, line 1.*aliases expand to more than"):
        load_config(path, STEPS)


@pytest.mark.fault(kind="config (YAML)", fault="aliases used normally",
                   behaviour="accepted: each alias is a copy of its anchor")
def test_plain_aliases_still_work(tmp_path):
    path = _write(tmp_path, "model:\n  options: &o {}\nhead:\n  options: *o\n")
    assert load_config(path, STEPS).head.options == {}


@pytest.mark.fault(kind="config (YAML)", fault="nesting 5000 deep",
                   behaviour="ConfigError 'nested too deeply', not a RecursionError")
def test_deep_nesting_is_refused(tmp_path):
    path = _write(tmp_path, "seed: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(path, STEPS)


@pytest.mark.fault(kind="config (--set)", fault="a number that overflows to inf (1e400)",
                   behaviour="ConfigError: must be a finite number, naming the key")
def test_overflowing_number_is_refused():
    with pytest.raises(ConfigError, match=r"^optimizer\.lr: must be a finite number, got inf"):
        load_config(None, [*STEPS, "optimizer.lr=1e400"])


@pytest.mark.fault(kind="config", fault="train.device not a device the trainer runs on "
                   "(gpu, mps, cuda:x)", behaviour="ConfigError naming train.device and the "
                   "valid forms (was an internal RuntimeError from torch)")
@pytest.mark.parametrize("device", ["gpu", "mps", "cuda:x", "CPU", ""])
def test_bad_device_is_a_config_error(device):
    with pytest.raises(ConfigError, match=r"^train\.device: expected cpu, cuda or cuda:N"):
        load_config(None, [*STEPS, f"train.device='{device}'"])


@pytest.mark.fault(kind="config", fault="values torch would refuse late or take silently "
                   "(negative milestone, momentum -1, betas 2, huge input, bad dtype name)",
                   behaviour="ConfigError naming the key, at load time")
@pytest.mark.parametrize(("override", "key"), [
    ("schedule.milestones=[-5]", "schedule.milestones"),
    ("schedule.gamma=0", "schedule.gamma"),
    ("schedule.warmup_start_factor=2", "schedule.warmup_start_factor"),
    ("optimizer.momentum=-1", "optimizer.momentum"),
    ("optimizer.betas=[2, 3]", "optimizer.betas"),
    ("optimizer.eps=0", "optimizer.eps"),
    ("model.input_size=[100000, 100000]", "model.input_size"),
    ("head.options={matmul_dtype: nope}", "head.options.matmul_dtype"),
])
def test_value_ranges_name_the_key(override, key):
    with pytest.raises(ValueError, match=rf"^{re.escape(key)}: "):
        load_config(None, [*STEPS, override])
