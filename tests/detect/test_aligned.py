"""detect -> align on pair sets: only the images the pairs use are read; no-face pairs counted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from marginface.data.pairs import ImageItem, PairSet
from marginface.detect.aligned import detect_pairset


@pytest.mark.shared
def test_detect_pairset_reads_only_used_images_and_counts_no_face_pairs(shared_dir, tmp_path):
    lfw = shared_dir / "data" / "lfw" / "images"
    a = lfw / "Abel_Pacheco" / "Abel_Pacheco_0001.jpg"
    b = lfw / "Abel_Pacheco" / "Abel_Pacheco_0002.jpg"
    blank = tmp_path / "blank.png"
    Image.new("RGB", (100, 100), (90, 90, 90)).save(blank)
    unused = tmp_path / "unused.jpg"
    unused.write_bytes(b"broken, but no pair uses it")
    images = [ImageItem(Path(p), p.name, np.zeros((5, 2))) for p in (a, b, blank, unused)]
    pairs = PairSet(images=images, pairs=[[0, 1], [0, 2], [1, 2]], issame=[True, False, False])
    detected, report, no_face_pairs = detect_pairset(pairs, "sphereface_112x96", num_workers=0,
                                                     progress=False)
    assert report.total == 3 and report.no_face == ["blank.png"]
    assert no_face_pairs == 2 and detected.skipped == 2
    assert detected.pairs.tolist() == [[0, 1]]
    crop = detected.images[0]
    assert isinstance(crop.source, bytes) and crop.landmarks is None  # the file's are ignored
    with pytest.raises(ValueError, match="raw photos"):
        detect_pairset(PairSet(images=images, pairs=[[0, 1]], issame=[True], aligned=True),
                       "sphereface_112x96")
