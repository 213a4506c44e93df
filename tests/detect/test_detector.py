"""The detector on real LFW photos (shared): faces, landmarks vs lfw_landmark.txt, conversions."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from marginface.data.lfw import read_landmarks
from marginface.detect import BadImageError, DetectorConfig, FaceDetector, select_face

LFW_SAMPLE_STEP = 55  # 13,233 / 55 = 241 images: a few hundred, so make test stays fast


@pytest.fixture(scope="module")
def lfw(shared_dir):
    root = shared_dir / "data" / "lfw"
    return root / "images", read_landmarks(root / "lfw_landmark.txt")


@pytest.fixture(scope="module")
def aaron(lfw):
    return Image.open(lfw[0] / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg").convert("RGB")


def _error(face, reference) -> np.ndarray:
    return np.linalg.norm(face.landmarks - np.asarray(reference).reshape(5, 2), axis=1)


@pytest.mark.shared
@pytest.mark.slow
def test_lfw_sample_detection_rate_and_landmark_error(detector, lfw):
    images, table = lfw
    names = sorted(table)[::LFW_SAMPLE_STEP]
    found, errors = 0, []
    for start in range(0, len(names), 16):
        batch = names[start:start + 16]
        for name, faces in zip(batch, detector([images / n for n in batch]), strict=True):
            face = select_face(faces, "central", (250, 250))
            if face is not None:
                found += 1
                errors.append(_error(face, table[name]))
    error = np.concatenate(errors)
    assert found / len(names) >= 0.995
    assert np.median(error) <= 1.5
    assert np.percentile(error, 95) <= 4.0


@pytest.mark.shared
def test_face_box_contains_landmarks_in_order(detector, aaron, lfw):
    faces = detector(aaron)[0]
    face = select_face(faces, "central", aaron.size)
    x1, y1, x2, y2 = face.box
    assert face.score > 0.9
    assert ((face.landmarks[:, 0] > x1) & (face.landmarks[:, 0] < x2)).all()
    left_eye, right_eye, nose, mouth_l, mouth_r = face.landmarks
    assert left_eye[0] < nose[0] < right_eye[0] and mouth_l[0] < mouth_r[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_l[1], mouth_r[1])
    assert np.median(_error(face, lfw[1]["Aaron_Eckhart/Aaron_Eckhart_0001.jpg"])) < 3


@pytest.mark.shared
def test_batch_equals_one_by_one_and_mixed_sizes(detector, aaron):
    small = aaron.resize((200, 200))
    together = detector([aaron, small, aaron])
    alone = [detector(aaron)[0], detector(small)[0]]
    for got, want in zip(together, [alone[0], alone[1], alone[0]], strict=True):
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            assert np.allclose(a.box, b.box, atol=1e-3)
            assert np.allclose(a.landmarks, b.landmarks, atol=1e-3)


@pytest.mark.shared
def test_large_image_downscaled_and_mapped_back(aaron):
    detector = FaceDetector(config=DetectorConfig(max_image_side=500))
    big = aaron.resize((1000, 1000), Image.Resampling.BICUBIC)  # detected at 500 px
    half = big.resize((500, 500), Image.Resampling.BILINEAR, reducing_gap=2.0)
    at_half = select_face(detector(half)[0], "central", half.size)
    face = select_face(detector(big)[0], "central", big.size)
    # Pixel index x at half size is (x + 0.5) * 2 - 0.5 at full size.
    assert np.allclose(face.landmarks, (at_half.landmarks + 0.5) * 2 - 0.5, atol=1e-3)
    assert np.allclose(face.box, (np.asarray(at_half.box) + 0.5) * 2 - 0.5, atol=1e-3)
    assert 0.2 < (face.box[2] - face.box[0]) / big.width < 0.6  # the face, not a small patch


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.shared
def test_grey_cmyk_16bit_alpha_palette_exif_are_converted(detector, aaron):
    reference = select_face(detector(aaron)[0], "central", aaron.size)
    grey = aaron.convert("L")
    sixteen = Image.fromarray(np.asarray(grey, dtype=np.uint16) * 257)  # mode I;16
    assert sixteen.mode.startswith("I;16")
    rgba = aaron.convert("RGBA")
    variants = {
        "grey": grey, "cmyk": _encode(aaron.convert("CMYK"), "JPEG", quality=95),
        "16-bit": _encode(sixteen, "PNG"), "alpha": _encode(rgba, "PNG"),
        "palette": aaron.convert("P", palette=Image.Palette.ADAPTIVE),
    }
    found = {}
    for name, variant in variants.items():
        found[name] = select_face(detector(variant)[0], "central", aaron.size)
        assert found[name] is not None, name
        # Grey / lossy variants are different inputs: the same face, a few pixels apart.
        assert np.abs(found[name].landmarks - reference.landmarks).max() < 5.0, name
    # Lossless ones are the same pixels: 16-bit is rescaled to exactly the grey image, and an
    # opaque alpha channel changes nothing.
    assert np.allclose(found["16-bit"].landmarks, found["grey"].landmarks)
    assert np.allclose(found["alpha"].landmarks, reference.landmarks)
    # EXIF orientation 6 (rotate 90 clockwise to view): stored rotated, detected upright.
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = aaron.transpose(Image.Transpose.ROTATE_90)
    face = select_face(detector(_encode(stored, "JPEG", quality=95, exif=exif))[0], "central",
                       aaron.size)
    assert np.abs(face.landmarks - reference.landmarks).max() < 5.0


def test_unreadable_and_too_small_images_are_named(detector, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(BadImageError, match="broken.jpg"):
        detector(bad)
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (8, 30)).save(tiny)
    with pytest.raises(BadImageError, match=r"tiny.png.*too small"):
        detector(tiny)
    with pytest.raises(BadImageError, match="does not exist"):
        detector(tmp_path / "missing.jpg")


def test_blank_image_has_no_face(detector):
    assert detector(np.full((120, 160, 3), 128, np.uint8)) == [[]]
