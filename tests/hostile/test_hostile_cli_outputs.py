"""Hostile output paths: every command checks its output targets before any work (the inputs
below do not even exist, so a later check would name them instead), with one line naming the
flag and the path; evaluate writes its results before the plot."""

from __future__ import annotations

import errno
import os
import tempfile

import pytest
from hostile_cli_helpers import BALANCED, one_line_error, run_cli, write_small_pair_set

import marginface.eval.model_report as model_report


def _case(argv, needles, fault, id_):
    return pytest.param(argv, needles, id=id_, marks=pytest.mark.fault(
        kind="output path", fault=fault,
        behaviour="exit 2 before any work, one line naming the flag and the path"))


# {file}: an existing regular file; {dir}: an existing directory; {missing}: no such input
CASES = [
    _case(["evaluate", "{missing}", "--pairs", "{missing}", "--out", "{file}"],
          ["--out", "{file}", "is a file, not a directory"], "evaluate --out is a file",
          "evaluate-file"),
    _case(["evaluate", "{missing}", "--pairs", "{missing}", "--out", "{file}/sub/dir"],
          ["--out", "{file}/sub/dir", "{file} is a file, not a directory"],
          "evaluate --out under a regular file", "evaluate-under-file"),
    _case(["embed", "{missing}", "-o", "{dir}", "--model", "{missing}"],
          ["--out", "{dir}", "is a directory"], "embed -o is a directory", "embed-dir"),
    _case(["embed", "{missing}", "-o", "{file}/emb.npy", "--model", "{missing}"],
          ["--out", "is a file, not a directory"], "embed -o under a regular file",
          "embed-under-file"),
    _case(["identify", "{missing}", "--gallery", "{missing}", "--model", "{missing}",
           "-o", "{dir}"], ["--out", "is a directory"], "identify -o is a directory",
          "identify-dir"),
    _case(["detect", "{missing}", "-o", "{dir}"], ["--out", "is a directory"],
          "detect -o is a directory", "detect-dir"),
    _case(["detect", "{missing}", "-o", "{dir}/faces.jsonl", "--draw", "{file}"],
          ["--draw", "is a file, not a directory"], "detect --draw is a file", "detect-draw"),
    _case(["export", "{missing}", "-o", "{dir}"], ["--output", "is a directory"],
          "export -o is a directory", "export-dir"),
    _case(["pack", "{missing}", "{dir}"], ["OUT", "is a directory"], "pack OUT is a directory",
          "pack-dir"),
    _case(["pack", "{missing}", "{dir}/train.rec"], ["OUT (.idx)", "train.idx"],
          "pack: the .idx beside OUT is a directory", "pack-idx"),
    _case(["align", "{missing}", "--out", "{dir}/set.bin"], ["--out", "set.bin: is a directory"],
          "align --out X.bin is a directory", "align-bin-dir"),
    _case(["align", "{missing}", "--out", "{file}"], ["--out", "is a file, not a directory"],
          "align --out folder is a file", "align-folder-file"),
    _case(["enroll", "{missing}", "--model", "{missing}", "-o", "{dir}"],
          ["--out", "is a directory"], "enroll -o is a directory", "enroll-dir"),
    _case(["enroll", "--gallery", "{dir}", "--remove", "x"], ["--gallery", "is a directory"],
          "enroll --gallery is a directory", "enroll-gallery-dir"),
    _case(["evaluate-identification", "{missing}", "--lfw", "{missing}", "--out", "{file}"],
          ["--out", "is a file"], "evaluate-identification --out is a file", "eval-id-file"),
    _case(["evaluate-ijb", "{missing}", "--root", "{missing}", "--out", "{file}/x"],
          ["--out", "is a file, not a directory"], "evaluate-ijb --out under a file",
          "ijb-under-file"),
    _case(["train", "--out", "{file}", "--max-steps", "1"], ["--out", "is a file"],
          "train --out is a file", "train-file"),
    _case(["demo", "--out", "{file}/run"], ["--out", "is a file, not a directory"],
          "demo --out under a file", "demo-under-file"),
    _case(["caffe", "convert", "{missing}", "{missing}", "--model", "sphere20", "-o", "{dir}"],
          ["--output", "is a directory"], "caffe convert -o is a directory", "caffe-dir"),
    _case(["subcenter-clean", "{missing}", "-o", "{dir}"], ["--output", "is a directory"],
          "subcenter-clean -o is a directory", "subcenter-dir"),
    _case(["import-weights", "{missing}", "--model", "mobilefacenet", "--input-size", "112x96",
           "-o", "{dir}"], ["--output", "is a directory"], "import-weights -o is a directory",
          "import-dir"),
]


@pytest.fixture
def places(tmp_path):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "a_dir" / "train.idx").mkdir()
    (tmp_path / "a_dir" / "set.bin").mkdir()
    return {"file": str(tmp_path / "a_file"), "dir": str(tmp_path / "a_dir"),
            "missing": str(tmp_path / "missing")}


@pytest.mark.parametrize(("argv", "needles"), CASES)
def test_output_checked_before_any_work(argv, needles, places, capsys):
    code, _, err = run_cli(capsys, *[a.format(**places) for a in argv])
    assert code == 2
    line = one_line_error(err, *[n.format(**places) for n in needles])
    assert places["missing"] not in line  # the output, not an input, is what failed


@pytest.mark.fault(kind="output path", fault="read-only output folder (chmod 0555)",
                   behaviour="exit 2, one line 'cannot write in DIR (permission denied)'")
@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="running as root: chmod does not deny root; see the injected case")
def test_read_only_folder(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, _, err = run_cli(capsys, "embed", tmp_path / "none", "-o", locked / "e.npy",
                               "--model", tmp_path / "none")
    finally:
        locked.chmod(0o755)
    assert code == 2
    one_line_error(err, "--out", str(locked), "permission denied")


@pytest.mark.fault(kind="output path", fault="folder that refuses new files (EACCES/EROFS, "
                   "injected)", behaviour="exit 2, one line naming the flag, folder and reason")
@pytest.mark.parametrize(("number", "reason"), [(errno.EACCES, "permission denied"),
                                                (errno.EROFS, "read-only file system")])
def test_unwritable_folder_injected(number, reason, tmp_path, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(number, os.strerror(number), str(kwargs.get("dir")))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    code, _, err = run_cli(capsys, "evaluate", tmp_path / "none", "--pairs", "x",
                           "--out", tmp_path / "new" / "out")
    assert code == 2
    one_line_error(err, "--out", f"cannot write in {tmp_path}", reason)
    assert not (tmp_path / "new").exists()  # the check creates nothing


@pytest.fixture
def small_set(tmp_path):
    return write_small_pair_set(tmp_path, BALANCED)


@pytest.mark.fault(kind="evaluate output", fault="disk full while writing the plot (last file)",
                   behaviour="exit 2, one line; report.json and scores.csv are already written")
def test_evaluate_keeps_results_when_the_plot_fails(small_set, capsys, monkeypatch):
    out = small_set / "out"

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out / "roc.png"))

    monkeypatch.setattr(model_report, "plot_roc", full)
    code, _, err = run_cli(capsys, "evaluate", small_set / "tiny.safetensors", "--pairs",
                           small_set / "pairs.txt", "--out", out, "--n-folds", "2",
                           "--no-progress", "--workers", "0")
    assert code == 2
    one_line_error(err, "roc.png", "no space left")
    assert (out / "report.json").is_file() and (out / "scores.csv").is_file()
