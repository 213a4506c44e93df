"""Gallery: enrolment templates, add/remove, the file (atomic, corrupt -> error), search."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from marginface.identify import Gallery, enroll_folder, load_gallery, templates_from_embeddings
from marginface.models.io import model_fingerprint


def _gallery(names, rows, labels=None, fingerprint="f" * 64, mode="mean"):
    rows = torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=1)
    labels = list(range(len(rows))) if labels is None else labels
    return Gallery(names, rows, torch.tensor(labels), fingerprint, {"name": "m"}, mode, "concat")


def test_templates_mean_of_normalised_embeddings():
    emb = np.array([[3.0, 0.0], [0.0, 1.0], [0.0, 5.0]])
    rows, labels = templates_from_embeddings(emb, [0, 0, 1], "mean")
    s = np.sqrt(0.5)  # mean of (1,0) and (0,1), normalised
    np.testing.assert_allclose(rows.numpy(), [[s, s], [0.0, 1.0]], atol=1e-7)
    assert labels.tolist() == [0, 1]
    rows, labels = templates_from_embeddings(emb, [0, 0, 1], "all")
    np.testing.assert_allclose(rows.numpy(), [[1, 0], [0, 1], [0, 1]])
    assert labels.tolist() == [0, 0, 1]


def test_search_ranks_identities_by_their_best_row():
    rows = [[1, 0], [0.9, 0.1], [0, 1], [0.95, 0.05]]
    g = _gallery(["a", "b", "c"], rows, [0, 0, 1, 2], mode="all")
    names, scores = g.search(np.array([[1.0, 0.0]]), k=3)
    assert names[0] == ["a", "c", "b"]  # a's best row (1,0) beats c; a's second row is not repeated
    assert scores[0, 0] == pytest.approx(1.0) and scores[0, 2] == pytest.approx(0.0, abs=1e-6)
    names, scores = g.search(np.array([[0.0, 1.0]]), k=5)
    assert names[0][3:] == ["", ""] and np.isinf(scores[0, 3:]).all()


def test_add_remove_and_duplicates():
    g = _gallery(["a", "b"], [[1, 0], [0, 1]])
    more = _gallery(["c", "b"], [[1, 1], [1, -1]])
    with pytest.raises(ValueError, match="already in the gallery: b.*--replace"):
        g.add(more)
    merged = g.add(more, replace=True)
    assert merged.identities == ["a", "c", "b"]
    replaced = merged.embeddings[merged.labels == 2].numpy()
    np.testing.assert_allclose(replaced, [[0.70710677, -0.70710677]])
    removed = merged.remove("a")
    assert removed.identities == ["c", "b"] and removed.labels.tolist() == [0, 1]
    with pytest.raises(ValueError, match="'zz' is not in the gallery"):
        g.remove("zz")
    with pytest.raises(ValueError, match="not the model"):
        g.add(_gallery(["d"], [[1, 0]], fingerprint="0" * 64))


def test_file_round_trip_and_corrupt_files(tmp_path):
    g = _gallery(["a", "b"], [[1, 0], [0, 1]])
    path = g.save(tmp_path / "people.gallery")
    back = load_gallery(path)
    assert back.identities == g.identities and back.fingerprint == g.fingerprint
    assert torch.equal(back.embeddings, g.embeddings) and back.mode == "mean"
    data = path.read_bytes()
    (tmp_path / "cut.gallery").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.gallery is corrupt"):
        load_gallery(tmp_path / "cut.gallery")
    (tmp_path / "junk.gallery").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="corrupt or not a gallery"):
        load_gallery(tmp_path / "junk.gallery")
    with pytest.raises(FileNotFoundError):
        load_gallery(tmp_path / "none.gallery")
    left = sorted(p.name for p in tmp_path.iterdir())  # no temporary files left behind
    assert left == ["cut.gallery", "junk.gallery", "people.gallery"]


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    import marginface.identify.gallery as module

    path = _gallery(["a"], [[1, 0]]).save(tmp_path / "g.gallery")
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(module, "safetensors_bytes", broken)
    with pytest.raises(OSError):
        _gallery(["b"], [[0, 1]]).save(path)
    assert path.read_bytes() == before


def test_enroll_folder_counts_empty_and_failed(people_dir, pooling_model):
    people, _ = people_dir
    (people / "empty").mkdir()
    (people / "p4" / "9.png").write_bytes(b"broken")
    result = enroll_folder(pooling_model, people, num_workers=0, progress=False, flip=None)
    g = result.gallery
    assert g.identities == ["p0", "p1", "p2", "p3", "p4"] and result.empty == ["empty"]
    assert list(result.failed) == [str(people / "p4" / "9.png")] and result.images == 15
    assert g.fingerprint == model_fingerprint(pooling_model) and g.images["p4"] == 3
    assert g.embeddings.shape == (5, 48)
    all_rows = enroll_folder(pooling_model, people, mode="all", num_workers=0, progress=False)
    assert all_rows.gallery.embeddings.shape[0] == 15
