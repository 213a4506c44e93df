"""CLI smoke tests of evaluate / embed / verify with a small random marginface model."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

import marginface.models as models
from marginface.cli.main import main
from marginface.data import write_pairs_list


@pytest.fixture
def model_file(tmp_path):
    model = models.create_model("mobilefacenet", input_size=(112, 96), embedding_dim=32)
    path = tmp_path / "tiny.safetensors"
    models.save_model(model.eval(), path)
    return path


@pytest.fixture
def faces(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for person in range(4):
        base = rng.integers(0, 256, (112, 96, 3)).astype(np.float64)
        for k in range(2):
            noisy = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
            path = tmp_path / "faces" / f"p{person}" / f"{k}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(noisy).save(path)
            paths.append(path)
    lines = []
    for person in range(4):
        lines.append((f"faces/p{person}/0.png", f"faces/p{person}/1.png", True))
        lines.append((f"faces/p{person}/0.png", f"faces/p{(person + 1) % 4}/1.png", False))
    lines = lines * 3  # 24 pairs, enough for 10 folds also after skipping
    write_pairs_list(tmp_path / "pairs.txt", lines)
    return tmp_path


def test_evaluate_writes_report_scores_roc(model_file, faces, capsys):
    out = faces / "eval"
    code = main(
        [
            "evaluate",
            str(model_file),
            "--pairs",
            str(faces / "pairs.txt"),
            "--out",
            str(out),
            "--no-progress",
            "--workers",
            "0",
        ]
    )
    assert code == 0
    assert "accuracy" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    for key in (
        "accuracy_mean",
        "accuracy_std",
        "auc",
        "eer",
        "tar_at_far",
        "threshold",
        "pairs",
        "skipped",
    ):
        assert key in report
    assert report["pairs"] == 24 and report["skipped"] == 0
    assert set(report["tar_at_far"]) >= {"0.1", "0.01", "0.001"}
    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert len(rows) == 24 and list(rows[0]) == ["fold", "same", "score"]
    assert [r["same"] for r in rows[:2]] == ["1", "0"]
    assert (out / "roc.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_bad_input_is_one_line_error(model_file, faces, capsys):
    (faces / "faces" / "p1" / "1.png").write_bytes(b"broken")
    args = [
        "evaluate",
        str(model_file),
        "--pairs",
        str(faces / "pairs.txt"),
        "--out",
        str(faces / "e"),
        "--no-progress",
        "--workers",
        "0",
    ]
    assert main(args) == 2
    assert "p1/1.png" in capsys.readouterr().err
    assert main(args + ["--skip-bad-images"]) == 0
    report = json.loads((faces / "e" / "report.json").read_text())
    # p1/1.png is in (p1_0, p1_1) and (p0_0, p1_1), each listed 3 times
    assert report["skipped"] == 6 and report["pairs"] == 18
    (faces / "bad.txt").write_text("faces/p0/0.png faces/p0/1.png 2\n")
    assert (
        main(
            [
                "evaluate",
                str(model_file),
                "--pairs",
                str(faces / "bad.txt"),
                "--out",
                str(faces / "e"),
            ]
        )
        == 2
    )
    assert "bad.txt, line 1" in capsys.readouterr().err


def test_embed_and_verify(model_file, faces, capsys):
    out = faces / "emb" / "emb.npy"
    assert (
        main(
            [
                "embed",
                str(faces / "faces"),
                "-o",
                str(out),
                "--model",
                str(model_file),
                "--no-progress",
                "--workers",
                "0",
            ]
        )
        == 0
    )
    embeddings = np.load(out)
    names = (faces / "emb" / "emb.txt").read_text().split()
    assert embeddings.shape == (8, 64) and names[0] == "p0/0.png"
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    capsys.readouterr()
    a, b = faces / "faces" / "p0" / "0.png", faces / "faces" / "p0" / "1.png"
    assert main(["verify", str(a), str(b), "--model", str(model_file), "--threshold", "-2"]) == 0
    printed = capsys.readouterr().out
    score = float(printed.split()[1])
    assert score == pytest.approx(float(embeddings[0] @ embeddings[1]), abs=1e-4)
    assert "decision: same" in printed
    assert main(["verify", str(a), str(b), "--model", str(model_file)]) == 0
    assert "decision: none" in capsys.readouterr().out
