"""evaluate_model end to end on synthetic faces: flips, skipping, engines, the .bin route."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from marginface.data import load_pairs
from marginface.data.align_batch import align_pairs_to_bin
from marginface.eval import compute_embeddings, evaluate_model


def test_evaluate_separates_synthetic_identities(pooling_model, synthetic_pairs):
    pairs = load_pairs(synthetic_pairs)
    result = evaluate_model(pooling_model, pairs, progress=False, num_workers=0)
    report, scores = result.report, result.scores
    assert report.pairs == 24 and report.skipped == 0
    assert report.accuracy_mean == 1.0 and report.auc == 1.0
    assert scores.shape == (24,)
    assert (scores[pairs.issame] > 0.9).all()
    assert result.alignment == {"landmarks": 0, "template": 18, "center": 0}
    assert (result.issame == pairs.issame).all() and result.folds.shape == (24,)


def test_flip_modes(pooling_model, synthetic_pairs):
    items = load_pairs(synthetic_pairs).images[:3]
    plain = compute_embeddings(pooling_model, items, flip=None, num_workers=0, progress=False)
    concat = compute_embeddings(pooling_model, items, flip="concat", num_workers=0, progress=False)
    summed = compute_embeddings(pooling_model, items, flip="sum", num_workers=0, progress=False)
    d = plain.embeddings.shape[1]
    assert concat.embeddings.shape[1] == 2 * d
    np.testing.assert_allclose(concat.embeddings[:, :d], plain.embeddings, atol=1e-5)
    np.testing.assert_allclose(
        summed.embeddings, concat.embeddings[:, :d] + concat.embeddings[:, d:], atol=1e-5
    )
    # the mirrored embedding is the embedding of the mirrored pooled grid
    grid = plain.embeddings.reshape(-1, 3, 4, 4)
    np.testing.assert_allclose(
        concat.embeddings[:, d:].reshape(-1, 3, 4, 4), grid[..., ::-1], atol=1e-5
    )
    with pytest.raises(ValueError, match="flip"):
        compute_embeddings(pooling_model, items, flip="both", num_workers=0)


def test_undecodable_image_named_or_skipped_and_counted(pooling_model, synthetic_pairs):
    bad = synthetic_pairs.parent / "faces" / "p3" / "1.png"
    bad.write_bytes(b"garbage, not a png")
    pairs = load_pairs(synthetic_pairs)
    with pytest.raises(ValueError, match="p3/1.png"):
        evaluate_model(pooling_model, pairs, progress=False, num_workers=0)
    result = evaluate_model(
        pooling_model, pairs, progress=False, num_workers=2, skip_bad_images=True
    )
    report, scores = result.report, result.scores
    # p3/1.png is in 2 pairs: (p3_0, p3_1) and (p3_1, p3_2)
    assert report.skipped == 2 and report.pairs == 22 and scores.shape == (22,)
    assert list(result.failed_images) == [str(bad)]


def test_missing_image_counted_with_failures(pooling_model, synthetic_pairs):
    (synthetic_pairs.parent / "faces" / "p0" / "0.png").unlink()
    with pytest.raises(FileNotFoundError, match="p0/0.png"):
        load_pairs(synthetic_pairs)
    pairs = load_pairs(synthetic_pairs, skip_bad_images=True)
    report = evaluate_model(pooling_model, pairs, progress=False, num_workers=0).report
    # p0/0.png is in 3 pairs: (p0_0, p0_1), (p0_0, p1_2), (p4_2, p0_0)
    assert report.skipped == 3 and report.pairs == 21


def test_engines_agree(pooling_model, synthetic_pairs):
    pairs = load_pairs(synthetic_pairs)
    s_eager = evaluate_model(
        pooling_model, pairs, progress=False, num_workers=0, engine="eager"
    ).scores
    s_ort = evaluate_model(
        pooling_model, pairs, progress=False, num_workers=0, engine="onnxruntime"
    ).scores
    np.testing.assert_allclose(s_ort, s_eager, atol=1e-5)
    with pytest.raises(ValueError, match="engine"):
        evaluate_model(pooling_model, pairs, progress=False, num_workers=0, engine="tpu")


def test_bin_route_matches_folder_route(pooling_model, synthetic_pairs, tmp_path):
    pairs = load_pairs(synthetic_pairs)
    report_bin = align_pairs_to_bin(
        pairs, tmp_path / "s.bin", template="arcface_112x112", progress=False, num_workers=0
    )
    assert report_bin.template == 18
    from_bin = load_pairs(tmp_path / "s.bin")
    assert len(from_bin) == 24
    with Image.open(__import__("io").BytesIO(from_bin.images[0].source)) as image:
        assert image.size == (112, 112)
    report = evaluate_model(pooling_model, from_bin, progress=False, num_workers=0).report
    assert report.accuracy_mean == 1.0


def test_old_tuple_and_details_forms_still_work_with_a_warning(pooling_model, synthetic_pairs):
    pairs = load_pairs(synthetic_pairs)
    details = {}
    with pytest.warns(DeprecationWarning, match="details"):
        result = evaluate_model(pooling_model, pairs, progress=False, num_workers=0,
                                details=details)
    assert details["alignment"] == result.alignment
    with pytest.warns(DeprecationWarning, match="unpacking"):
        report, scores = result
    assert report is result.report and scores is result.scores
