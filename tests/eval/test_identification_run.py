"""evaluate_identification on synthetic faces against the metrics computed directly, and the
LFW protocol on the shared data with the CASIA MobileFaceNet."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import marginface.models as models
from face_fixtures import make_identities
from marginface.cli.main import main
from marginface.data.lfw_identification import IdentificationSet
from marginface.data.pairs import ImageItem
from marginface.eval.identification import identification_report
from marginface.eval.identification_run import evaluate_identification
from marginface.identify import threshold_from_report


def test_report_matches_the_metrics_and_counts_skips(tmp_path, pooling_model):
    files = make_identities(tmp_path / "faces", people=5, per_person=3)
    gallery = [ImageItem(files[(p, 0)], str(files[(p, 0)])) for p in range(4)]  # p4 not enrolled
    probes = [ImageItem(files[(p, k)], str(files[(p, k)])) for p in range(5) for k in (1, 2)]
    probe_labels = [f"p{p}" for p in range(5) for _ in (1, 2)]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"junk")
    probes.append(ImageItem(bad, str(bad)))
    probe_labels.append("p0")
    dataset = IdentificationSet("synthetic", gallery, [f"p{p}" for p in range(4)], probes,
                                probe_labels)
    report = evaluate_identification(pooling_model, dataset, tmp_path / "out", num_workers=0,
                                     progress=False, flip=None, ranks=(1, 2), fpirs=(0.5,))
    assert (report["gallery"], report["mated"], report["nonmated"]) == (4, 8, 2)
    assert report["skipped"] == {"images": 1, "identities": []}
    # the same numbers from the embeddings computed here (pooling model: 4x4 average pooling)
    from marginface.eval.embed import compute_embeddings

    emb = compute_embeddings(pooling_model, gallery + probes[:-1], flip=None, num_workers=0,
                             progress=False).embeddings
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    expected = identification_report(emb[4:] @ emb[:4].T, np.array(probe_labels[:-1]),
                                     np.array([f"p{p}" for p in range(4)]), ranks=(1, 2),
                                     fpirs=(0.5,))
    assert report["cmc"] == pytest.approx(expected.cmc)
    assert report["tpir_at_fpir"]["0.5"] == pytest.approx(expected.tpir_at_fpir["0.5"])
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert written["cmc"] == report["cmc"]
    assert threshold_from_report(tmp_path / "out" / "report.json", 0.5) == pytest.approx(
        expected.threshold_at_fpir["0.5"]
    )
    for plot in ("cmc.png", "det.png"):
        assert (tmp_path / "out" / plot).stat().st_size > 1000


def _lfw_counts(images, initials):
    people = [p for p in sorted(images.iterdir()) if p.name[0] in initials]
    sizes = [len(list(p.glob("*.jpg"))) for p in people]
    mated = sum(s - 1 for s in sizes if s >= 2)
    return sum(s >= 2 for s in sizes), mated, sum(s == 1 for s in sizes)


@pytest.mark.shared
@pytest.mark.slow
def test_lfw_identification_mobilefacenet_casia(shared_dir, tmp_path):
    """People whose names start with B (559 images; the whole-LFW figure is in docs/
    evaluation.md). The bf16 engine where the CPU has native bf16, as the LFW acceptance test."""
    checkpoint = torch.load(shared_dir / "models" / "mobilefacenet-casia" / "068.ckpt",
                            map_location="cpu", weights_only=False)
    model = models.create_model("mobilefacenet", input_size=(112, 96), embedding_dim=128)
    models.import_state_dict(model, checkpoint["net_state_dict"])
    models.save_model(model, tmp_path / "m.safetensors")
    native = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    out = tmp_path / "lfw"
    code = main(["evaluate-identification", str(tmp_path / "m.safetensors"), "--lfw",
                 str(shared_dir / "data" / "lfw"), "--out", str(out), "--initials", "B",
                 "--engine", "bf16" if native else "onnxruntime", "--no-progress"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    counts = _lfw_counts(shared_dir / "data" / "lfw" / "images", "B")
    assert (report["gallery"], report["mated"], report["nonmated"]) == counts == (81, 250, 228)
    assert report["alignment"] == {"landmarks": 559, "template": 0, "center": 0}
    # measured 0.996 / 0.98 / 0.88 (bf16); margins for the engine's rounding
    assert report["cmc"]["1"] >= 0.98 and report["cmc"]["10"] == 1.0
    assert report["tpir_at_fpir"]["0.1"] >= 0.95 and report["tpir_at_fpir"]["0.01"] >= 0.8
    assert report["threshold_at_fpir"]["0.01"] > report["threshold_at_fpir"]["0.1"]
