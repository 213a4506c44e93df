"""``detect``, ``align --detect``, ``embed --detect``, ``verify --detect`` on real LFW photos."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

import marginface.models as models
from marginface.cli.main import main

PEOPLE = ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Abel_Pacheco/Abel_Pacheco_0001.jpg",
          "Abel_Pacheco/Abel_Pacheco_0002.jpg"]


def _tiny_model_file(tmp_path):
    """An untrained 32-d MobileFaceNet file (112x96): the commands' plumbing needs no good one."""
    model = models.create_model("mobilefacenet", input_size=(112, 96), embedding_dim=32)
    path = tmp_path / "tiny.safetensors"
    models.save_model(model.eval(), path)
    return path


@pytest.fixture
def photos(shared_dir, tmp_path):
    """Three LFW photos (copied into tmp_path only) and a blank image with no face."""
    root = tmp_path / "photos"
    for name in PEOPLE:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_dir / "data" / "lfw" / "images" / name, root / name)
    (root / "blank").mkdir()
    Image.new("RGB", (120, 100), (128, 128, 128)).save(root / "blank" / "grey.png")
    return root


@pytest.mark.shared
def test_detect_writes_one_line_per_image_and_draws(photos, tmp_path, capsys):
    out = tmp_path / "faces.jsonl"
    assert main(["detect", str(photos), "-o", str(out), "--draw", str(tmp_path / "drawn"),
                 "--workers", "0", "--no-progress"]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    by_name = {line["image"]: line for line in lines}
    assert len(lines) == 4 and set(by_name) == {*PEOPLE, "blank/grey.png"}
    assert by_name["blank/grey.png"]["status"] == "no face"
    face = by_name[PEOPLE[0]]["faces"][0]
    assert len(face["box"]) == 4 and len(face["landmarks"]) == 5 and face["score"] > 0.9
    assert (tmp_path / "drawn" / PEOPLE[0]).is_file()
    printed = capsys.readouterr().out
    assert "1 with no face" in printed and "no face: blank/grey.png" in printed


@pytest.mark.shared
def test_bad_image_is_an_error_unless_skipped(photos, tmp_path, capsys):
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "faces.jsonl"
    assert main(["detect", str(photos), "-o", str(out), "--workers", "0", "--no-progress"]) == 2
    assert "broken.jpg" in capsys.readouterr().err
    assert main(["detect", str(photos), "-o", str(out), "--workers", "0", "--no-progress",
                 "--skip-bad-images"]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["status"] for line in lines if line["image"] == "broken.jpg"] == ["unreadable"]
    assert "1 unreadable" in capsys.readouterr().out


@pytest.mark.shared
def test_align_detect_writes_template_crops(photos, tmp_path, capsys):
    out = tmp_path / "aligned"
    assert main(["align", str(photos), "--detect", "--out", str(out), "--workers", "0",
                 "--no-progress"]) == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg"))
    assert written == sorted(PEOPLE)
    assert Image.open(out / PEOPLE[0]).size == (112, 112)
    assert "no face: blank/grey.png" in capsys.readouterr().out


@pytest.mark.shared
def test_embed_and_verify_detect(photos, tmp_path, capsys):
    model_file = _tiny_model_file(tmp_path)
    out = tmp_path / "emb.npy"
    assert main(["embed", str(photos), "-o", str(out), "--model", str(model_file), "--detect",
                 "--workers", "0", "--no-progress"]) == 0
    assert np.load(out).shape == (3, 64)  # flip-concat; the blank image has no row
    assert out.with_suffix(".txt").read_text().split() == sorted(PEOPLE)
    report = json.loads(out.with_suffix(".detect.json").read_text())
    assert report["no_face_images"] == ["blank/grey.png"] and report["with_face"] == 3
    a, b = photos / PEOPLE[1], photos / PEOPLE[2]
    assert main(["verify", str(a), str(b), "--model", str(model_file), "--detect"]) == 0
    assert "score" in capsys.readouterr().out
    assert main(["verify", str(a), str(photos / "blank" / "grey.png"), "--model",
                 str(model_file), "--detect"]) == 2
    assert "no face found in image" in capsys.readouterr().err


@pytest.mark.shared
def test_evaluate_detect_counts_no_face_pairs(photos, tmp_path, capsys):
    from marginface.data import write_pairs_list

    model_file = _tiny_model_file(tmp_path)
    lines = [(f"photos/{PEOPLE[1]}", f"photos/{PEOPLE[2]}", True),
             (f"photos/{PEOPLE[0]}", f"photos/{PEOPLE[1]}", False),
             (f"photos/{PEOPLE[0]}", "photos/blank/grey.png", False)] * 12
    write_pairs_list(tmp_path / "pairs.txt", lines)
    out = tmp_path / "eval"
    assert main(["evaluate", str(model_file), "--pairs", str(tmp_path / "pairs.txt"),
                 "--out", str(out), "--detect", "--workers", "0", "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["detection"]["no_face_pairs"] == 12
    [no_face] = report["detection"]["no_face_images"]
    assert no_face.endswith("photos/blank/grey.png")
    assert report["detection"]["faces_per_image"] == {"0": 1, "1": 3}
    # every embedded face came from detection (taken as an aligned crop), none from landmarks
    assert report["alignment"] == {"landmarks": 0, "template": 3, "center": 0}
    assert "12 pairs left out" in capsys.readouterr().out


@pytest.mark.shared
def test_pack_detect_builds_a_rec_from_raw_photos(photos, tmp_path, capsys):
    from marginface.data.recfile import RecordDataset

    rec = tmp_path / "train.rec"
    assert main(["pack", str(photos), str(rec), "--detect", "--template", "arcface_112x112",
                 "--workers", "0", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "1 with no face" in printed and "packed 3 images of 2 identities" in printed
    assert (tmp_path / "property").read_text().strip() == "2,112,112"
    assert len(RecordDataset(rec)) == 3
    assert not list(tmp_path.glob(".aligned-*"))  # the staging folder is gone
    assert main(["pack", str(photos), str(rec), "--detect"]) == 2
    assert "--template" in capsys.readouterr().err


@pytest.mark.shared
def test_enroll_and_identify_detect_from_raw_photos(photos, tmp_path, capsys):
    model_file = _tiny_model_file(tmp_path)
    gallery = tmp_path / "people.gallery"
    assert main(["enroll", str(photos), "--model", str(model_file), "-o", str(gallery),
                 "--detect", "--template", "all", "--workers", "0", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "skipped identity blank: no usable image" in out
    assert "no face found" in out and "grey.png" in out
    assert "2 identities, 3 rows" in out
    probes = tmp_path / "probes"
    probes.mkdir()
    shutil.copy(photos / PEOPLE[2], probes / "who.jpg")  # an enrolled photo: the same crop
    shutil.copy(photos / "blank" / "grey.png", probes / "grey.png")
    result = tmp_path / "answers.json"
    assert main(["identify", str(probes), "--gallery", str(gallery), "--model", str(model_file),
                 "--detect", "--top-k", "2", "-o", str(result), "--workers", "0",
                 "--no-progress"]) == 0
    report = json.loads(result.read_text())
    assert report["probes"] == 1 and list(report["failed"]) == [str(probes / "grey.png")]
    answer = report["answers"][0]
    assert answer["answer"] == "Abel_Pacheco" and answer["score"] == pytest.approx(1.0, abs=1e-4)
