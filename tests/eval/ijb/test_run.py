"""evaluate_ijb on a small IJB-C-layout fixture: pooling and every metric recomputed here by
hand (loops) from the per-image embeddings of the one embedding path."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from face_fixtures import PoolingModel, make_identities, write_ijb
from marginface.data.lfw import read_landmarks
from marginface.data.pairs import ImageItem
from marginface.eval.embed import compute_embeddings
from marginface.eval.ijb.run import evaluate_ijb
from marginface.templates import template_points


def _by_hand(root, images, model, flip, norm, detector):
    names = sorted(images, key=lambda n: int(n.split(".")[0]))
    marks = {}
    for line in (root / "meta" / "ijbc_name_5pts_score.txt").read_text().splitlines():
        parts = line.split()
        marks[parts[0]] = np.array([float(v) for v in parts[1:11]]).reshape(5, 2)
    items = [ImageItem(root / "loose_crop" / n, n, marks[n]) for n in names]
    emb = compute_embeddings(model, items, flip=flip, num_workers=0, progress=False).embeddings
    feats = {}
    for n, e in zip(names, emb.astype(np.float64), strict=True):
        f = e / np.linalg.norm(e) if norm == "normalize" else e
        feats[n] = f * images[n][2] if detector else f
    templates = {}
    for tid in sorted({v[0] for v in images.values()}):
        medias = {}
        for n in names:
            if images[n][0] == tid:
                medias.setdefault(images[n][1], []).append(feats[n])
        t = sum(np.mean(frames, axis=0) for frames in medias.values())
        templates[tid] = t / np.linalg.norm(t)
    return templates


def _nearest_tar(scores, labels, far):
    best = None
    for t in [np.inf, *sorted(set(scores), reverse=True)]:  # accept score >= t
        accepted = scores >= t if np.isfinite(t) else np.zeros_like(labels, bool)
        fpr, tpr = accepted[~labels].mean(), accepted[labels].mean()
        if best is None or abs(fpr - far) < best[0]:
            best = (abs(fpr - far), tpr)
    return best[1]


def _check(root, images, model, flip, norm, detector, report, people):
    templates = _by_hand(root, images, model, flip, norm, detector)
    labels = np.array([i == j for i in range(people) for j in range(people)])
    scores = np.array([templates[100 + i] @ templates[200 + j] for i in range(people)
                       for j in range(people)])
    ver = report["verification"]
    assert ver["pairs"] == people**2 and ver["skipped_pairs"] == 0
    for far, tar in ver["tar_at_far_nearest"].items():
        assert tar == pytest.approx(_nearest_tar(scores, labels, float(far))), far
    half = people // 2
    rank1 = []
    for gallery in (range(half), range(half, people)):
        mated = [p for p in range(people) if p in gallery]
        hits = [max(gallery, key=lambda g: templates[200 + p] @ templates[100 + g]) == p
                for p in mated]
        rank1.append(np.mean(hits))
    ident = report["identification"]
    assert ident["G1"]["mated"] == half and ident["G1"]["nonmated"] == people - half
    assert ident["mean"]["cmc"]["1"] == pytest.approx(np.mean(rank1))
    assert ident["G1"]["cmc"]["1"] == pytest.approx(rank1[0])


@pytest.mark.parametrize(("flip", "norm", "detector"),
                         [("sum", "quality", True), (None, "normalize", False)])
def test_ijb_run_on_synthetic_faces(tmp_path, flip, norm, detector):
    files = make_identities(tmp_path / "faces", people=4, per_person=5)
    points = template_points("sphereface_112x96")  # aligned crops: identity alignment
    people = [[(files[(p, k)], points) for k in range(5)] for p in range(4)]
    images = write_ijb(tmp_path / "IJBC", people)
    model = PoolingModel()
    # the crops are already aligned (112x96): their landmarks are ignored, with a warning
    with pytest.warns(UserWarning, match="landmarks were ignored"):
        report = evaluate_ijb(model, tmp_path / "IJBC", tmp_path / "out", flip=flip,
                              norm=norm, detector_score=detector, num_workers=0, progress=False)
    assert report["alignment"]["template"] == 20 and report["templates"] == 8
    _check(tmp_path / "IJBC", images, model, flip, norm, detector, report, 4)
    assert json.loads((tmp_path / "out" / "report.json").read_text())["options"]["norm"] == norm
    assert (tmp_path / "out" / "roc.png").stat().st_size > 1000


def test_missing_landmarks_and_bad_image_are_reported(tmp_path):
    files = make_identities(tmp_path / "faces", people=2, per_person=4)
    points = template_points("sphereface_112x96")
    write_ijb(tmp_path / "IJBC", [[(files[(p, k)], points) for k in range(4)] for p in range(2)])
    # a 1x1 image decodes but is too small to hold a face: skipped like a broken one (template
    # 100 keeps its images 0 and 1)
    Image.new("RGB", (1, 1)).save(tmp_path / "IJBC" / "loose_crop" / "2.jpg")
    (tmp_path / "IJBC" / "loose_crop" / "7.jpg").write_bytes(b"broken")  # template 201's only image
    report = evaluate_ijb(PoolingModel(), tmp_path / "IJBC", num_workers=0, progress=False)
    assert report["skipped_images"] == 2 and report["verification"]["skipped_pairs"] == 2
    assert report["identification"]["G2"]["skipped_templates"] == 1
    marks = tmp_path / "IJBC" / "meta" / "ijbc_name_5pts_score.txt"
    marks.write_text("\n".join(marks.read_text().splitlines()[1:]) + "\n")
    with pytest.raises(ValueError, match=r"no landmarks for 1 images, e.g. \['0.jpg'\]"):
        evaluate_ijb(PoolingModel(), tmp_path / "IJBC", num_workers=0, progress=False)


@pytest.mark.shared
def test_ijb_run_on_lfw_images(shared_dir, tmp_path):
    lfw = shared_dir / "data" / "lfw"
    marks = read_landmarks(lfw / "lfw_landmark.txt")
    chosen = [p for p in sorted((lfw / "images").iterdir()) if len(list(p.iterdir())) >= 5][:6]
    people = [[(f, marks[f"{p.name}/{f.name}"]) for f in sorted(p.iterdir())[:5]] for p in chosen]
    images = write_ijb(tmp_path / "IJBC", people)
    model = PoolingModel()
    report = evaluate_ijb(model, tmp_path / "IJBC", num_workers=0, progress=False)
    assert report["alignment"] == {"landmarks": 30, "template": 0, "center": 0}
    _check(tmp_path / "IJBC", images, model, "sum", "quality", True, report, 6)


def test_evaluate_ijb_command(tmp_path, capsys):
    import marginface.models as models
    from marginface.cli.main import main

    files = make_identities(tmp_path / "faces", people=2, per_person=5)
    points = template_points("sphereface_112x96")
    write_ijb(tmp_path / "IJBC", [[(files[(p, k)], points) for k in range(5)] for p in range(2)])
    model = models.create_model("mobilefacenet", input_size=(112, 96), embedding_dim=16)
    models.save_model(model.eval(), tmp_path / "m.safetensors")
    args = ["evaluate-ijb", str(tmp_path / "m.safetensors"), "--root", str(tmp_path / "IJBC"),
            "--out", str(tmp_path / "out"), "--flip", "none", "--norm", "normalize",
            "--no-detector-score", "--workers", "0", "--no-progress"]
    assert main(args) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["options"] == {"flip": None, "norm": "normalize", "detector_score": False,
                                 "engine": "torch"}
    assert set(report["identification"]) == {"G1", "G2", "mean"}
    assert main([*args[:2], "--root", str(tmp_path / "nowhere"), "--out", "x"]) == 2
    assert "does not exist" in capsys.readouterr().err
