"""enroll / identify commands end to end with a small random marginface model."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

import marginface.models as models
from face_fixtures import make_identities
from marginface.cli.main import main
from marginface.identify import load_gallery


def _model(tmp_path, seed, name):
    import torch

    torch.manual_seed(seed)
    model = models.create_model("mobilefacenet", input_size=(112, 96), embedding_dim=32)
    path = tmp_path / name
    models.save_model(model.eval(), path)
    return path


@pytest.fixture
def setup(tmp_path):
    files = make_identities(tmp_path / "people", people=4, per_person=2)
    (tmp_path / "people" / "nobody").mkdir()
    probes = tmp_path / "probes"
    probes.mkdir()
    shutil.copy(files[(0, 0)], probes / "a.png")
    shutil.copy(files[(2, 1)], probes / "b.png")
    (probes / "c.png").write_bytes(b"no image")
    more = make_identities(tmp_path / "more", people=6, per_person=1)
    shutil.rmtree(tmp_path / "more" / "p0")  # keep p1..p5: p1..p3 are already enrolled
    return tmp_path, _model(tmp_path, 0, "m.safetensors"), probes, more


def _identify(*args):
    return main(["identify", *[str(a) for a in args], "--workers", "0", "--no-progress"])


@pytest.mark.slow
def test_enroll_identify_add_remove(setup, capsys):
    tmp, model, probes, _ = setup
    gallery = tmp / "people.gallery"
    common = ["--model", str(model), "--workers", "0", "--no-progress", "--template", "all"]
    assert main(["enroll", str(tmp / "people"), "-o", str(gallery), *common]) == 0
    out = capsys.readouterr().out
    assert "skipped identity nobody: no usable image" in out and "4 identities, 8 rows" in out
    assert load_gallery(gallery).identities == ["p0", "p1", "p2", "p3"]

    assert _identify(probes, "--gallery", gallery, "--model", model, "-o", tmp / "o.json") == 0
    out = capsys.readouterr().out
    assert "without a usable face" in out and "c.png: no usable face" in out
    result = json.loads((tmp / "o.json").read_text())
    answers = {a["probe"].rsplit("/", 1)[1]: a for a in result["answers"]}
    assert answers["a.png"]["answer"] == "p0" and answers["b.png"]["answer"] == "p2"
    assert answers["a.png"]["score"] == pytest.approx(1.0, abs=1e-4)  # an enrolled image
    assert len(answers["a.png"]["candidates"]) == 4 and len(result["failed"]) == 1

    args = (probes, "--gallery", gallery, "--model", model, "--threshold", "1.01")
    assert _identify(*args, "-o", tmp / "o.csv", "--top-k", "2") == 0
    rows = list(csv.DictReader((tmp / "o.csv").open()))
    assert {r["answer"] for r in rows} == {"unknown", "no usable face"} and len(rows) == 5

    gallery_args = ["--gallery", str(gallery), *common]
    assert main(["enroll", str(tmp / "more"), *gallery_args, "--add"]) == 2
    assert "already in the gallery: p1, p2, p3 (3); pass --replace" in capsys.readouterr().err
    assert main(["enroll", str(tmp / "more"), *gallery_args, "--add", "--replace"]) == 0
    g = load_gallery(gallery)
    assert g.identities == ["p0", "p1", "p2", "p3", "p4", "p5"]  # replaced ones move to the end
    assert g.images == {"p0": 2, "p1": 1, "p2": 1, "p3": 1, "p4": 1, "p5": 1}
    assert main(["enroll", "--gallery", str(gallery), "--remove", "p4"]) == 0
    assert "p4" not in load_gallery(gallery).identities
    assert main(["enroll", "--gallery", str(gallery), "--remove", "zz"]) == 2
    assert "'zz' is not in the gallery" in capsys.readouterr().err


@pytest.mark.slow
def test_other_model_corrupt_gallery_and_report_threshold(setup, capsys):
    tmp, model, probes, _ = setup
    gallery = tmp / "g.gallery"
    common = ["--workers", "0", "--no-progress"]
    enroll = ["enroll", str(tmp / "people"), "--model", str(model)]
    assert main([*enroll, "-o", str(gallery), *common]) == 0
    other = _model(tmp, 1, "other.safetensors")
    assert _identify(probes, "--gallery", gallery, "--model", other) == 2
    assert "is not the model this gallery was enrolled with" in capsys.readouterr().err
    enroll[-1] = str(other)
    assert main([*enroll, "--gallery", str(gallery), "--add", "--replace", *common]) == 2
    assert "not the model this gallery" in capsys.readouterr().err
    # the same weights saved with another preprocessing: refused too
    restd = tmp / "restd.safetensors"
    models.save_model(models.load_model(model), restd, std=(1.0, 1.0, 1.0))
    assert _identify(probes, "--gallery", gallery, "--model", restd) == 2
    assert "has preprocessing" in capsys.readouterr().err
    before = gallery.read_bytes()
    assert load_gallery(gallery).images["p0"] == 2 and gallery.read_bytes() == before

    report = tmp / "report.json"
    report.write_text(json.dumps({"threshold_at_fpir": {"0.1": 0.5, "0.01": 2.0}}))
    assert _identify(probes, "--gallery", gallery, "--model", model, "--report", report) == 0
    assert "2 probes identified, 2 unknown" in capsys.readouterr().out  # threshold 2.0 at 0.01
    assert _identify(probes, "--gallery", gallery, "--model", model, "--report", report,
                     "--fpir", "0.05") == 2
    assert "no threshold for FPIR 0.05; it has 0.1, 0.01" in capsys.readouterr().err

    (tmp / "bad.gallery").write_bytes(before[:100])
    assert _identify(probes, "--gallery", tmp / "bad.gallery", "--model", model) == 2
    assert "bad.gallery is corrupt" in capsys.readouterr().err
