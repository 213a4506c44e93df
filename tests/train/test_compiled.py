"""Speed options: channels_last, the compiled backbone and its eager fallback, precision auto."""

from __future__ import annotations

import json

import pytest
import torch
from test_engine import assert_exact_resume, states, tiny_trainer

from marginface.train import compiled as compiled_module
from marginface.train.compiled import CompiledBackbone
from marginface.train.precision import native_bf16, resolve_precision

STEPS = ["train.max_steps=6", "train.checkpoint_interval=3", "train.grad_clip=5.0"]


def _broken_compiler(module):
    def fail(x):
        raise RuntimeError("inductor: no C++ compiler (forced by the test)")
    return fail


def test_compile_failure_warns_once_and_trains_like_eager(tmp_path, monkeypatch, recwarn):
    eager = tiny_trainer(tmp_path / "eager", [*STEPS, "train.precision=fp32"])
    eager.fit()
    monkeypatch.setattr(compiled_module, "compile_module", _broken_compiler)
    fallback = tiny_trainer(tmp_path / "fallback", [*STEPS, "train.compile=true",
                                                    "train.precision=fp32"])
    summary = fallback.fit()
    warned = [w for w in recwarn if "train.compile failed" in str(w.message)]
    assert len(warned) == 1, [str(w.message) for w in recwarn]
    assert "forced by the test" in str(warned[0].message)
    assert summary.steps == 6 and summary.compiled is False
    a, b = states(eager), states(fallback)
    for key in a:  # the fallback is the eager path: bit-identical
        assert torch.equal(a[key], b[key]), key
    record = json.loads((tmp_path / "fallback" / "summary.json").read_text())
    assert record["compiled"] is False and record["precision"] == "fp32"


def test_compiler_raising_at_construction_also_falls_back():
    def raising(module):
        raise ImportError("no inductor")
    net = torch.nn.Linear(3, 2)
    with pytest.warns(RuntimeWarning, match="no inductor"):
        wrapped = CompiledBackbone(net, raising)
    assert not wrapped.active
    x = torch.randn(4, 3)
    assert torch.equal(wrapped(x), net(x))


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_channels_last_exact_resume_and_same_as_nchw(tmp_path, optimizer):
    steps = [*STEPS, f"optimizer.name={optimizer}", "train.channels_last=true"]
    whole = assert_exact_resume(tmp_path, steps)
    assert next(whole.model.conv2.parameters()).is_contiguous(memory_format=torch.channels_last)
    a = states(whole)
    if optimizer == "adamw":
        # Adam divides by sqrt(v): conv2's bias feeds BN, its gradient is rounding noise, and
        # Adam turns noise into full-size steps; the layout comparison is SGD's
        return
    nchw = tiny_trainer(tmp_path / "c", [*STEPS, f"optimizer.name={optimizer}"])
    nchw.fit()
    c = states(nchw)
    for key in a:  # another memory layout: the same training up to float rounding
        torch.testing.assert_close(a[key], c[key], rtol=1e-3, atol=1e-4, msg=key)


def test_precision_auto_table(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", True, cpu, True) == "fp32"
    assert resolve_precision("bf16", False, cpu, False) == "bf16"
    monkeypatch.setattr("marginface.train.precision.native_bf16", lambda device: True)
    assert resolve_precision("auto", True, cpu) == "bf16"
    assert resolve_precision("auto", False, cpu, channels_last=True) == "bf16"
    assert resolve_precision("auto", False, cpu, channels_last=False) == "fp32"  # eager NCHW
    monkeypatch.setattr("marginface.train.precision.native_bf16", lambda device: False)
    assert resolve_precision("auto", True, cpu, True) == "fp32"
    assert resolve_precision("auto", False, cpu, True) == "fp32"


def test_default_config_trains_in_channels_last_and_auto_precision(tmp_path, monkeypatch):
    """A config that says nothing gets channels_last, and bf16 exactly where the device has it."""
    monkeypatch.setattr("marginface.train.precision.native_bf16", lambda device: True)
    trainer = tiny_trainer(tmp_path / "auto", STEPS)
    assert trainer.config.train.channels_last is True and trainer.precision == "bf16"
    assert next(trainer.model.conv2.parameters()).is_contiguous(memory_format=torch.channels_last)
    monkeypatch.setattr("marginface.train.precision.native_bf16", lambda device: False)
    assert tiny_trainer(tmp_path / "no_bf16", STEPS).precision == "fp32"


def test_native_bf16_answers_a_bool():
    assert isinstance(native_bf16(torch.device("cpu")), bool)
    assert native_bf16(torch.device("meta")) is False


@pytest.mark.slow
def test_really_compiled_step_trains_and_resumes(tmp_path):
    """torch.compile'd backbone, channels_last, bf16: trains, checkpoints, resumes (recompiling),
    and its loss follows the eager fp32 run's."""
    steps = [*STEPS, "train.compile=true", "train.channels_last=true", "train.precision=bf16"]
    run = tiny_trainer(tmp_path / "c", steps)
    run.fit(stop_after=3)
    resumed = tiny_trainer(tmp_path / "c", resume=True)
    summary = resumed.fit()
    assert summary.compiled is True and summary.precision == "bf16"
    eager = tiny_trainer(tmp_path / "e", STEPS)
    reference = eager.fit()
    assert abs(summary.final_loss - reference.final_loss) < 0.05 * abs(reference.final_loss)
