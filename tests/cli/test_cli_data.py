"""CLI smoke tests of the data subcommands on tiny synthetic data: pack, align."""

from __future__ import annotations

import numpy as np
from PIL import Image

from marginface.cli.main import main
from marginface.data import RecordDataset, load_pairs, write_landmarks, write_pairs_list
from marginface.data.align import template_points


def _folder(root, counts, size=(40, 50)):
    rng = np.random.default_rng(0)
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for k in range(count):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{k}.jpg")
    return root


def test_pack(tmp_path, capsys):
    _folder(tmp_path / "faces", {"a": 2, "b": 3})
    assert main(["pack", str(tmp_path / "faces"), str(tmp_path / "out" / "train.rec")]) == 0
    assert "packed 5 images of 2 identities" in capsys.readouterr().out
    dataset = RecordDataset(tmp_path / "out" / "train.rec")
    assert dataset.labels.tolist() == [0, 0, 1, 1, 1]
    assert (tmp_path / "out" / "property").read_text().strip() == "2,50,40"


def test_pack_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["pack", str(tmp_path / "empty"), str(tmp_path / "x.rec")]) == 2
    assert "empty dataset" in capsys.readouterr().err


def test_align_folder_with_landmarks_and_fallback(tmp_path, capsys):
    _folder(tmp_path / "raw", {"a": 2, "b": 1}, size=(150, 150))
    points = template_points("arcface_112x112") * 1.2 + 5
    write_landmarks(tmp_path / "lm.txt", {"a/0.jpg": points, "b/0.jpg": points})
    code = main(
        [
            "align",
            str(tmp_path / "raw"),
            "--out",
            str(tmp_path / "aligned"),
            "--landmarks",
            str(tmp_path / "lm.txt"),
            "--template",
            "sphereface_112x96",
            "--no-progress",
            "--workers",
            "0",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "2 aligned from landmarks" in out and "1 centre-cropped" in out and "a/1.jpg" in out
    for name in ("a/0.jpg", "a/1.jpg", "b/0.jpg"):
        assert Image.open(tmp_path / "aligned" / name).size == (96, 112)


def test_align_pairs_to_bin(tmp_path, capsys):
    _folder(tmp_path / "raw", {"a": 2, "b": 1}, size=(150, 150))
    write_pairs_list(
        tmp_path / "pairs.txt",
        [("raw/a/0.jpg", "raw/a/1.jpg", True), ("raw/a/0.jpg", "raw/b/0.jpg", False)],
    )
    code = main(
        [
            "align",
            str(tmp_path / "pairs.txt"),
            "--out",
            str(tmp_path / "p.bin"),
            "--no-progress",
            "--workers",
            "0",
        ]
    )
    assert code == 0
    assert "3 centre-cropped" in capsys.readouterr().out
    pairs = load_pairs(tmp_path / "p.bin")
    assert len(pairs) == 2 and pairs.issame.tolist() == [True, False]
