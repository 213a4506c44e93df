"""Hostile input files and arguments through the CLI: non-UTF-8 text files, a directory where a
file goes, empty paths, JSON that is not a report. Each is exit 2 and one line naming the file."""

from __future__ import annotations

import pytest
from hostile_cli_helpers import one_line_error, run_cli

import marginface.models as models


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    models.save_model(models.create_model("mobilefacenet", input_size=(112, 96),
                                          embedding_dim=16, width=0.25).eval(),
                      root / "m.safetensors")
    (root / "latin1_pairs.txt").write_bytes(b"a.png b.png 1\ncaf\xe9.png b.png 1\n")
    (root / "utf16_landmarks.txt").write_bytes("a.png 1 2".encode("utf-16"))
    (root / "pairs.txt").write_text("a.png b.png 1\n")
    (root / "report.json").write_text('{"threshold_at_fpir": [1, 2]}')
    (root / "folder").mkdir()
    names = {"model": "m.safetensors", "latin1": "latin1_pairs.txt",
             "utf16": "utf16_landmarks.txt", "pairs": "pairs.txt", "report": "report.json",
             "folder": "folder"}
    return {key: str(root / name) for key, name in names.items()} | {"root": str(root)}


def _case(argv, needles, fault, id_):
    return pytest.param(argv, needles, id=id_, marks=pytest.mark.fault(
        kind="input file", fault=fault, behaviour="exit 2, one line naming the file"))


CASES = [
    _case(["evaluate", "{model}", "--pairs", "{latin1}", "--out", "{root}/o"],
          ["pairs file {latin1}, line 2, column 4", "not UTF-8", "0xe9"],
          "pairs list in Latin-1 (not UTF-8)", "pairs-latin1"),
    _case(["evaluate", "{model}", "--pairs", "{pairs}", "--out", "{root}/o",
           "--landmarks", "{utf16}"],
          ["landmarks file {utf16}, line 1, column 1", "not UTF-8"],
          "landmarks file in UTF-16", "landmarks-utf16"),
    _case(["evaluate", "{model}", "--pairs", "{folder}", "--out", "{root}/o"],
          ["pairs file {folder} is a directory"], "a directory as the pairs list",
          "pairs-dir"),
    _case(["evaluate", "{model}", "--pairs", "", "--out", "{root}/o"],
          ["pairs spec is empty"], "empty pairs spec", "pairs-empty"),
    _case(["evaluate", "{model}", "--pairs", "{pairs}", "--out", ""],
          ["--out: the path is empty"], "empty --out", "out-empty"),
    _case(["verify", "a.png", "b.png", "--model", "{model}", "--landmarks",
           "{folder}"], ["landmarks file {folder} is a directory"],
          "a directory as the landmarks file", "landmarks-dir"),
    _case(["identify", "{folder}", "--gallery", "{folder}", "--model", "{model}"],
          ["gallery file {folder} is a directory"], "a directory as the gallery",
          "gallery-dir"),
    _case(["identify", "{folder}", "--gallery", "g", "--model", "{model}",
           "--report", "{report}"], ["report {report}", "threshold_at_fpir"],
          "identification report with a list for a table", "id-report-list"),
    _case(["caffe"], ["give an ACTION"], "caffe without an action", "caffe-no-action"),
    _case(["train", "--set", "data.exclude_list={latin1}", "--set", "train.max_steps=1",
           "--set", "train.progress=false", "--out", "{root}/run"],
          ["data.exclude_list {latin1}, line 2", "not UTF-8"],
          "data.exclude_list in Latin-1", "exclude-latin1"),
]


@pytest.mark.parametrize(("argv", "needles"), CASES)
def test_bad_input_is_one_line(argv, needles, files, capsys):
    code, _, err = run_cli(capsys, *[a.format(**files) for a in argv])
    assert code == 2
    one_line_error(err, *[n.format(**files) for n in needles])
