"""Hostile CLI use: every user error is one line on stderr with exit code 2, never a traceback;
Ctrl-C is exit 130; a bug is "internal error" (exit 1) and ``--debug`` shows its traceback."""

from __future__ import annotations

import argparse
import ast
import errno
import importlib
import os
import re
from pathlib import Path

import pytest
from hostile_cli_helpers import one_line_error, run_cli

import marginface.cli.verify as verify_cli
import marginface.models as models
from marginface.cli.main import SUBCOMMAND_MODULES, user_message
from marginface.errors import UserInputError, describe_os_error

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    models.save_model(models.create_model("mobilefacenet", input_size=(112, 96),
                                          embedding_dim=16).eval(), path)
    return path


@pytest.fixture
def raising_verify(monkeypatch):
    """``marginface verify`` whose work raises the given exception."""

    def install(error: BaseException) -> None:
        def run(args):
            raise error

        monkeypatch.setattr(verify_cli, "_run", run)

    return install


@pytest.mark.fault(kind="CLI model path", fault="a directory given as --model",
                   behaviour="exit 2, one line: 'is a directory', not 'does not exist'")
def test_directory_as_model_file_says_is_a_directory(tmp_path, capsys):
    code, _, err = run_cli(capsys, "verify", "a.png", "b.png", "--model", tmp_path)
    assert code == 2
    line = one_line_error(err, "marginface verify: error:", str(tmp_path), "is a directory")
    assert "does not exist" not in line


@pytest.mark.fault(kind="CLI model path", fault="missing model file",
                   behaviour="exit 2, one line naming the file and 'does not exist'")
def test_missing_model_file(tmp_path, capsys):
    code, _, err = run_cli(capsys, "embed", tmp_path, "-o", tmp_path / "e.npy",
                           "--model", tmp_path / "none.safetensors")
    assert code == 2
    one_line_error(err, "none.safetensors", "does not exist")


@pytest.mark.fault(kind="CLI arguments", fault="--threshold nan / inf / text on verify",
                   behaviour="exit 2, one line naming --threshold")
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "high"])
def test_verify_threshold_must_be_finite(value, model_file, capsys):
    code, _, err = run_cli(capsys, "verify", "a.png", "b.png", "--model", model_file,
                           f"--threshold={value}")
    assert code == 2
    one_line_error(err, "--threshold", value)


IDENTIFY = ["identify", "probes", "--gallery", "g", "--model", "m"]
EVALUATE = ["evaluate", "m", "--pairs", "p", "--out", "o"]


@pytest.mark.fault(kind="CLI arguments", fault="non-finite, out-of-range or non-numeric numbers "
                   "(--threshold, --fpir, --top-k, --batch-size, --workers, --n-folds, "
                   "--max-steps, landmarks)", behaviour="exit 2, one line naming the flag")
@pytest.mark.parametrize(("argv", "flag", "value"), [
    ([*IDENTIFY, "--threshold", "nan"], "--threshold", "nan"),
    ([*IDENTIFY, "--threshold", "inf"], "--threshold", "inf"),
    ([*IDENTIFY, "--fpir", "0"], "--fpir", "0"),
    ([*IDENTIFY, "--fpir", "nan"], "--fpir", "nan"),
    ([*IDENTIFY, "--top-k", "0"], "--top-k", "0"),
    ([*IDENTIFY, "--batch-size=-1"], "--batch-size", "-1"),
    ([*EVALUATE, "--workers=-1"], "--workers", "-1"),
    ([*EVALUATE, "--n-folds", "ten"], "--n-folds", "ten"),
    ([*EVALUATE, "--threshold", "nan"], "--threshold", "nan"),
    (["train", "--max-steps", "0"], "--max-steps", "0"),
    (["verify", "a", "b", "--model", "m", "--landmarks-a", *["1"] * 9, "nan"],
     "--landmarks-a", "nan"),
    (["subcenter-clean", "run", "-o", "x", "--threshold", "inf"], "--threshold", "inf"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_numbers_are_checked(argv, flag, value, capsys):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    one_line_error(err, f"argument {flag}", value)


@pytest.mark.fault(kind="CLI arguments", fault="unknown option",
                   behaviour="exit 2, one line pointing at --help (no usage block)")
def test_unknown_option_is_one_line(capsys):
    code, _, err = run_cli(capsys, "evaluate", "m", "--pairs", "p", "--out", "o", "--bogus")
    assert code == 2
    one_line_error(err, "--bogus", "--help")


@pytest.mark.fault(kind="verify --report", fault="report.json without threshold, NaN, not JSON",
                   behaviour="exit 2, one line naming --report and the problem")
@pytest.mark.parametrize(("text", "needle"), [('{"accuracy": 1}', "no 'threshold'"),
                                              ('{"threshold": NaN}', "finite"),
                                              ('{"threshold": null}', "finite"),
                                              ("[1, 2]", "no 'threshold'"),
                                              ('{"threshold": 0.3', "line 1"),
                                              ('{"one_sided": true, "pairs": 10}',
                                               "one kind of pair only")])
def test_verify_report_is_checked(text, needle, tmp_path, model_file, capsys):
    (tmp_path / "report.json").write_text(text)
    code, _, err = run_cli(capsys, "verify", "a.png", "b.png", "--model", model_file,
                           "--report", tmp_path / "report.json")
    assert code == 2
    one_line_error(err, "--report", "report.json", needle)


def _case(error, code, needles, kind, fault, behaviour, id_):
    return pytest.param(error, code, needles, id=id_,
                        marks=pytest.mark.fault(kind=kind, fault=fault, behaviour=behaviour))


RAISED = [
    _case(KeyboardInterrupt(), 130, ["marginface verify: interrupted"], "CLI",
          "Ctrl-C (KeyboardInterrupt) during a command", "exit 130, one line 'interrupted'",
          "ctrl-c"),
    _case(TypeError("unsupported operand"), 1,
          ["internal error", "TypeError: unsupported operand", "--debug"], "CLI",
          "internal bug (TypeError from our code)",
          "exit 1, one line 'internal error' with a --debug hint", "internal"),
    _case(UnicodeDecodeError("utf-8", b"ab\xffcd", 2, 3, "invalid start byte"), 2,
          ["not UTF-8", "0xff", "--debug"], "text input", "non-UTF-8 bytes with no file known",
          "exit 2, one line with the byte and a --debug hint", "unicode"),
    _case(ValueError("first line\n  second line\n"), 2, ["first line second line"], "CLI",
          "multi-line library message", "printed as one line", "multi-line"),
    *[_case(OSError(number, os.strerror(number), "/data/out/emb.npy"), 2,
            ["/data/out/emb.npy: ", reason], "output path", f"OSError {errno.errorcode[number]}",
            "exit 2, one line 'PATH: reason' in words", errno.errorcode[number])
      for number, reason in [
          (errno.ENOSPC, "no space left on the device"), (errno.EACCES, "permission denied"),
          (errno.EISDIR, "is a directory"), (errno.ENOTDIR, "is a file, not a directory"),
          (errno.EROFS, "read-only file system"), (errno.EDQUOT, "disk quota exceeded")]],
]


@pytest.mark.parametrize(("error", "code", "needles"), RAISED)
def test_raised_errors_become_one_line(error, code, needles, raising_verify, capsys):
    raising_verify(error)
    got, _, err = run_cli(capsys, "verify", "a", "b", "--model", "m")
    assert got == code
    one_line_error(err, *needles)


@pytest.mark.fault(kind="CLI", fault="--debug before or after the subcommand",
                   behaviour="the traceback is printed, then the same one-line error")
@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(where, raising_verify, capsys):
    raising_verify(ValueError("bad value in x"))
    argv = ["verify", "a", "b", "--model", "m"]
    argv = ["--debug", *argv] if where == "before" else [*argv, "--debug"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert "Traceback" in err and "ValueError: bad value in x" in err
    assert err.strip().splitlines()[-1] == "marginface verify: error: bad value in x"


@pytest.mark.fault(kind="CLI hints", fault="a library hint naming a flag the command lacks",
                   behaviour="the hint is left out; kept where the command has the flag")
def test_hints_name_only_flags_the_command_has():
    error = ValueError("cannot read image x.png: truncated; pass skip_bad_images / "
                       "--skip-bad-images to skip its pairs, counted")
    assert user_message(error, {"--model"}) == "cannot read image x.png: truncated"
    assert "--skip-bad-images" in user_message(error, {"--skip-bad-images"})
    typed = UserInputError("image x.png is 1x1", hints=[("--skip-bad-images", "to skip it")])
    assert user_message(typed, {"--out"}) == "image x.png is 1x1"
    assert user_message(typed, {"--skip-bad-images"}) == (
        "image x.png is 1x1; pass --skip-bad-images to skip it")


@pytest.mark.fault(kind="output path", fault="OSError without a file name",
                   behaviour="its own text, unchanged")
def test_describe_os_error_without_filename():
    assert describe_os_error(FileNotFoundError("model file m does not exist")) == (
        "model file m does not exist")
    assert describe_os_error(OSError(errno.ENOSPC, "No space left on device")) == (
        "no space left on the device")


# flags of other programs that a help text may quote
FOREIGN_FLAGS = {"--nproc_per_node": "torchrun's"}


def _parser_flags(parser: argparse.ArgumentParser) -> set[str]:
    flags = {option for action in parser._actions for option in action.option_strings}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags |= _parser_flags(sub)
    return flags


def _strings(tree: ast.AST) -> list[str]:
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


@pytest.mark.fault(kind="CLI hints", fault="a message or help text naming a flag the command "
                   "does not have", behaviour="none: every --flag in a cli module is its own")
@pytest.mark.parametrize("name", SUBCOMMAND_MODULES)
def test_cli_modules_name_only_their_own_flags(name):
    module = importlib.import_module(f"marginface.cli.{name}")
    root = argparse.ArgumentParser()
    module.register(root.add_subparsers())
    own = _parser_flags(root) | {"--help", "--debug", *FOREIGN_FLAGS}
    source = ast.parse(Path(module.__file__).read_text())
    named = {flag for text in _strings(source)
             for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*", text)}
    assert named, f"{name}: no flags found, the scan is broken"
    assert named <= own, f"marginface.cli.{name} names flags it lacks: {sorted(named - own)}"
