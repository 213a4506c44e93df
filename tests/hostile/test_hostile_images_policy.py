"""Hostile inputs to the commands that embed images: unaligned photos are never silently
centre-cropped, landmarks of aligned crops are ignored, tiny images never get a verdict, NaN
never gives a decision."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import marginface.models as models
from marginface.cli.main import main
from marginface.data import write_pairs_list
from marginface.data.align import NotAlignedError
from marginface.data.decoding import BadImageError
from marginface.data.lfw import write_landmarks
from marginface.eval.embed import compute_embeddings
from marginface.eval.images import NonFiniteEmbeddingError, embed_folder, verify_images
from marginface.identify.enroll import enroll_folder

fault = pytest.mark.fault
RUN = ["--no-progress", "--workers", "0"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return models.create_model("mobilefacenet", input_size=(112, 96), embedding_dim=32).eval()


@pytest.fixture(scope="module")
def model_file(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    models.save_model(model, path)
    return path


def _image(path, size_wh, seed=0):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size_wh[1], size_wh[0], 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    """Two aligned 96x112 crops and one 250x250 photo under tmp/faces/p0."""
    faces = tmp_path / "faces"
    _image(faces / "p0" / "a.png", (96, 112), 1)
    _image(faces / "p0" / "b.png", (96, 112), 2)
    _image(faces / "p1" / "photo.png", (250, 250), 3)
    return faces


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@fault(kind="verify input", fault="unaligned 250x250 photo, no --detect/--landmarks",
       behaviour="exit 2, one line naming the file, --detect, --landmarks and --center-crop")
def test_verify_refuses_an_unaligned_photo(folder, model_file, capsys):
    a, photo = folder / "p0" / "a.png", folder / "p1" / "photo.png"
    assert main(["verify", str(a), str(photo), "--model", str(model_file),
                 "--threshold", "0.3"]) == 2
    captured = capsys.readouterr()
    line = _one_line(captured.err)
    assert "photo.png" in line and "250x250" in line
    for option in ("--detect", "--landmarks", "--center-crop"):
        assert option in line
    assert "decision" not in captured.out
    # the explicit flag keeps the old behaviour
    assert main(["verify", str(a), str(photo), "--model", str(model_file), "--threshold", "0.3",
                 "--center-crop"]) == 0
    assert "decision:" in capsys.readouterr().out


@fault(kind="verify input (Python API)", fault="unaligned photo",
       behaviour="NotAlignedError (a ValueError) naming it; center_crop=True allows it")
def test_verify_images_library_refuses_unaligned(folder, model):
    a, photo = folder / "p0" / "a.png", folder / "p1" / "photo.png"
    with pytest.raises(NotAlignedError, match=r"photo\.png.*--center-crop"):
        verify_images(model, a, photo)
    assert issubclass(NotAlignedError, ValueError)
    result = verify_images(model, a, photo, center_crop=True)
    assert np.isfinite(result.score)


@fault(kind="embed input", fault="folder with one unaligned photo",
       behaviour="exit 2 naming it, nothing written; --center-crop embeds all")
def test_embed_refuses_unaligned_unless_center_crop(folder, model_file, tmp_path, capsys):
    out = tmp_path / "emb" / "emb.npy"
    assert main(["embed", str(folder), "-o", str(out), "--model", str(model_file), *RUN]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "photo.png" in line and "--center-crop" in line
    assert not out.exists()
    assert main(["embed", str(folder), "-o", str(out), "--model", str(model_file), *RUN,
                 "--center-crop"]) == 0
    assert np.load(out).shape == (3, 64)


@fault(kind="evaluate input", fault="pairs list with unaligned photos",
       behaviour="exit 2 naming the photo; --center-crop evaluates and counts centre crops")
def test_evaluate_refuses_unaligned_unless_center_crop(folder, model_file, tmp_path, capsys):
    pairs = [("faces/p0/a.png", "faces/p0/b.png", True),
             ("faces/p0/a.png", "faces/p1/photo.png", False)] * 10
    write_pairs_list(tmp_path / "pairs.txt", pairs)
    base = ["evaluate", str(model_file), "--pairs", str(tmp_path / "pairs.txt"), *RUN]
    assert main([*base, "--out", str(tmp_path / "e1")]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "photo.png" in line and "--detect" in line
    assert main([*base, "--out", str(tmp_path / "e2"), "--center-crop"]) == 0
    report = json.loads((tmp_path / "e2" / "report.json").read_text())
    assert report["alignment"] == {"landmarks": 0, "template": 2, "center": 1}
    assert report["center_crop"] is True


@fault(kind="enroll / identify input", fault="unaligned photos in the gallery or probes",
       behaviour="exit 2 naming the photo; --center-crop enrols / identifies")
@pytest.mark.slow  # several embedding runs (model load + engine set-up each)
def test_enroll_and_identify_refuse_unaligned(folder, model_file, model, tmp_path, capsys):
    gallery = tmp_path / "g.gallery"
    assert main(["enroll", str(folder), "--model", str(model_file), "-o", str(gallery),
                 *RUN]) == 2
    assert "photo.png" in _one_line(capsys.readouterr().err)
    assert not gallery.exists()
    with pytest.raises(NotAlignedError, match="photo.png"):
        enroll_folder(model, folder, num_workers=0, progress=False)
    assert main(["enroll", str(folder), "--model", str(model_file), "-o", str(gallery), *RUN,
                 "--center-crop"]) == 0
    capsys.readouterr()
    probe = folder / "p1" / "photo.png"
    assert main(["identify", str(probe), "--gallery", str(gallery), "--model",
                 str(model_file), *RUN]) == 2
    assert "--center-crop" in _one_line(capsys.readouterr().err)
    assert main(["identify", str(probe), "--gallery", str(gallery), "--model",
                 str(model_file), *RUN, "--center-crop"]) == 0
    assert "photo.png: p1" in capsys.readouterr().out


@fault(kind="landmarks file", fault="an entry for an image already at the model's input size",
       behaviour="landmarks ignored with a warning: the embedding is the aligned crop's own")
@pytest.mark.slow  # several embedding runs (model load + engine set-up each)
def test_landmarks_of_an_aligned_crop_are_ignored(folder, model, tmp_path):
    crop = folder / "p0" / "a.png"
    twisted = np.array([[10, 20], [80, 15], [40, 60], [20, 90], [70, 95]], dtype=np.float64)
    from marginface.data.pairs import ImageItem

    plain = compute_embeddings(model, [crop], num_workers=0, progress=False)
    with pytest.warns(UserWarning, match=r"landmarks were ignored.*a\.png"):
        marked = compute_embeddings(model, [ImageItem(crop, str(crop), twisted)],
                                    num_workers=0, progress=False)
    np.testing.assert_array_equal(marked.embeddings, plain.embeddings)
    assert marked.methods["template"] == 1 and marked.landmarks_ignored == [str(crop)]
    # the same through embed --landmarks
    landmarks = tmp_path / "marks.txt"
    write_landmarks(landmarks, {"a.png": twisted})  # paths relative to the folder embedded
    out = tmp_path / "e.npy"
    with pytest.warns(UserWarning, match="landmarks were ignored"):
        embed_folder(model, folder / "p0", out, landmarks_file=landmarks, num_workers=0,
                     progress=False)
    rows = np.load(out)
    unit = plain.embeddings[0] / np.linalg.norm(plain.embeddings[0])
    np.testing.assert_allclose(rows[0], unit, atol=1e-6)


@fault(kind="verify input", fault="1x1 image (also with --center-crop)",
       behaviour="exit 2 'too small', never a verdict; the hint names no flag verify lacks")
@pytest.mark.parametrize("extra", [[], ["--center-crop"]])
def test_tiny_image_never_gets_a_verdict(folder, model_file, tmp_path, capsys, extra):
    tiny = _image(tmp_path / "dot.png", (1, 1))
    assert main(["verify", str(folder / "p0" / "a.png"), str(tiny), "--model", str(model_file),
                 "--threshold", "0.1", *extra]) == 2
    captured = capsys.readouterr()
    line = _one_line(captured.err)
    assert "dot.png" in line and "too small" in line and "16x16" in line
    assert "--skip-bad-images" not in line  # verify has no such flag
    assert "score" not in captured.out and "decision" not in captured.out


@fault(kind="embed input", fault="15x40 image among aligned crops",
       behaviour="exit 2 naming it and --skip-bad-images; with the flag: skipped, no row")
def test_tiny_image_in_embed_is_an_error_or_skipped(folder, model_file, tmp_path, capsys):
    _image(folder / "p0" / "thin.png", (15, 40))
    (folder / "p1" / "photo.png").unlink()
    out = tmp_path / "emb.npy"
    assert main(["embed", str(folder), "-o", str(out), "--model", str(model_file), *RUN]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "thin.png" in line and "too small" in line and "--skip-bad-images" in line
    with pytest.warns(UserWarning, match=r"skipped 1 .*thin\.png"):
        assert main(["embed", str(folder), "-o", str(out), "--model", str(model_file), *RUN,
                     "--skip-bad-images"]) == 0
    names = json.loads(out.with_suffix(".json").read_text())
    assert names == ["p0/a.png", "p0/b.png"] and np.load(out).shape[0] == 2


@fault(kind="evaluate input", fault="1x1 image in a pair",
       behaviour="exit 2 naming it; --skip-bad-images leaves its pairs out and counts them")
def test_tiny_image_in_evaluate(folder, model_file, tmp_path, capsys):
    _image(folder / "p1" / "dot.png", (1, 1))
    _image(folder / "p1" / "c.png", (96, 112), 5)
    pairs = [("faces/p0/a.png", "faces/p0/b.png", True),
             ("faces/p0/b.png", "faces/p1/c.png", False),
             ("faces/p0/a.png", "faces/p1/dot.png", False)] * 10
    write_pairs_list(tmp_path / "pairs.txt", pairs)
    base = ["evaluate", str(model_file), "--pairs", str(tmp_path / "pairs.txt"), *RUN,
            "--out", str(tmp_path / "e")]
    assert main(base) == 2
    line = _one_line(capsys.readouterr().err)
    assert "dot.png" in line and "too small" in line and "--skip-bad-images" in line
    assert main([*base, "--skip-bad-images"]) == 0
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert list(report["failed_images"]) == [str(folder / "p1" / "dot.png")]
    assert report["skipped"] == 10


@fault(kind="align input", fault="1x1 image in the folder",
       behaviour="exit 2 naming it and --skip-bad-images; with it: skipped and listed")
def test_tiny_image_in_align(tmp_path, capsys):
    _image(tmp_path / "in" / "p0" / "ok.png", (112, 112))
    _image(tmp_path / "in" / "p0" / "dot.png", (1, 1))
    args = ["align", str(tmp_path / "in"), "--out", str(tmp_path / "out"), *RUN]
    assert main(args) == 2
    line = _one_line(capsys.readouterr().err)
    assert "dot.png" in line and "too small" in line and "--skip-bad-images" in line
    assert main([*args, "--skip-bad-images"]) == 0
    printed = capsys.readouterr().out
    assert "1 unreadable or too small" in printed and "skipped p0/dot.png" in printed
    assert (tmp_path / "out" / "p0" / "ok.jpg").is_file()


@fault(kind="identify input", fault="1x1 probe image",
       behaviour="named as without a usable face, no answer for it")
@pytest.mark.slow  # several embedding runs (model load + engine set-up each)
def test_tiny_probe_gets_no_answer(folder, model_file, tmp_path, capsys):
    (folder / "p1" / "photo.png").unlink()
    _image(folder / "p1" / "c.png", (96, 112), 5)
    gallery = tmp_path / "g.gallery"
    assert main(["enroll", str(folder), "--model", str(model_file), "-o", str(gallery),
                 *RUN]) == 0
    probes = tmp_path / "probes"
    _image(probes / "dot.png", (1, 1))
    _image(probes / "ok.png", (96, 112), 1)
    capsys.readouterr()
    assert main(["identify", str(probes), "--gallery", str(gallery), "--model",
                 str(model_file), *RUN]) == 0
    out = capsys.readouterr().out
    assert "dot.png: no usable face" in out and "too small" in out
    assert "dot.png: p" not in out and "1 probes identified" in out


@fault(kind="model weights", fault="NaN weights reach verify",
       behaviour="NonFiniteEmbeddingError / exit 2, never 'score nan' with a decision")
@pytest.mark.slow  # several embedding runs (model load + engine set-up each)
def test_nan_embedding_never_gives_a_verdict(folder, model, tmp_path, capsys):
    import copy

    broken = copy.deepcopy(model)
    with torch.no_grad():
        next(broken.parameters()).fill_(float("nan"))
    a, b = folder / "p0" / "a.png", folder / "p0" / "b.png"
    with pytest.raises(NonFiniteEmbeddingError, match=r"NaN or infinite.*a\.png"):
        verify_images(broken, a, b, threshold=0.3)
    with pytest.raises(NonFiniteEmbeddingError):
        embed_folder(broken, folder / "p0", tmp_path / "nan.npy", num_workers=0, progress=False)
    assert not (tmp_path / "nan.npy").exists()
    (folder / "p1" / "photo.png").unlink()
    _image(folder / "p1" / "c.png", (96, 112), 5)
    with pytest.raises(NonFiniteEmbeddingError, match="NaN or infinite"):  # no NaN gallery
        enroll_folder(broken, folder, num_workers=0, progress=False)
    path = tmp_path / "nan.safetensors"
    try:
        models.save_model(broken, path)
    except ValueError:  # a writer that refuses non-finite weights: nothing to load either
        return
    code = main(["verify", str(a), str(b), "--model", str(path), "--threshold", "0.3"])
    captured = capsys.readouterr()
    assert code == 2 and "decision" not in captured.out
    assert any(word in captured.err.lower() for word in ("nan", "non-finite", "infinite"))
    write_pairs_list(folder / "pairs.txt", [("p0/a.png", "p0/b.png", True),
                                            ("p0/a.png", "p1/c.png", False)] * 10)
    code = main(["evaluate", str(path), "--pairs", str(folder / "pairs.txt"), "--out",
                 str(tmp_path / "e"), *RUN])
    assert code == 2 and not (tmp_path / "e" / "report.json").exists()
    assert any(word in capsys.readouterr().err.lower() for word in ("nan", "non-finite"))


@fault(kind="verify threshold", fault="--threshold nan / inf through the library",
       behaviour="ValueError naming the threshold, no decision")
@pytest.mark.parametrize("threshold", [float("nan"), float("inf")])
def test_non_finite_threshold(folder, model, threshold):
    a, b = folder / "p0" / "a.png", folder / "p0" / "b.png"
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        verify_images(model, a, b, threshold=threshold)


@fault(kind="verify input", fault="a directory given as an image",
       behaviour="error saying it is a directory (not 'does not exist')")
def test_verify_directory_as_image(folder, model):
    with pytest.raises(FileNotFoundError, match="is a directory"):
        verify_images(model, folder / "p0", folder / "p0" / "a.png")


@fault(kind="embed input", fault="unreadable image (text named .png)",
       behaviour="BadImageError naming it and skip_bad_images")
def test_unreadable_image_in_embed_library(folder, model, tmp_path):
    (folder / "p1" / "photo.png").write_text("not an image")
    with pytest.raises(BadImageError, match=r"photo\.png.*skip_bad_images"):
        embed_folder(model, folder, tmp_path / "x.npy", num_workers=0, progress=False)


@fault(kind="align input", fault="photo without landmarks; aligned crop with a landmarks entry",
       behaviour="align centre-crops the photo and counts and lists it; the crop's landmarks "
       "are ignored and listed")
def test_align_counts_centre_crops_and_ignored_landmarks(tmp_path, capsys):
    _image(tmp_path / "in" / "raw.png", (150, 130))
    _image(tmp_path / "in" / "crop.png", (112, 112), 1)
    marks = tmp_path / "marks.txt"
    write_landmarks(marks, {"crop.png": np.array([[30, 50], [80, 50], [55, 70], [35, 90],
                                                  [75, 90]], dtype=np.float64)})
    assert main(["align", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--landmarks",
                 str(marks), "--format", "PNG", *RUN]) == 0
    out = capsys.readouterr().out
    assert "1 already aligned, 1 centre-cropped (no landmarks)" in out
    assert "centre crop (no landmarks): raw.png" in out
    assert "landmarks ignored (already an aligned crop): crop.png" in out
    kept = np.asarray(Image.open(tmp_path / "out" / "crop.png"))
    np.testing.assert_array_equal(kept, np.asarray(Image.open(tmp_path / "in" / "crop.png")))
