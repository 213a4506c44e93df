"""insightface .bin verification sets: write -> read, the real small_lfw.bin, safe unpickling."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
from PIL import Image

from marginface.data import load_bin, load_pairs, read_bin, write_bin


def _jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_write_read_round_trip(tmp_path):
    images = [_jpeg(i) for i in range(6)]
    write_bin(tmp_path / "x.bin", images, [True, False, True])
    read, issame = read_bin(tmp_path / "x.bin")
    assert read == images and issame.tolist() == [True, False, True]
    pairs = load_pairs(tmp_path / "x.bin")
    assert pairs.aligned and len(pairs) == 3 and pairs.pairs.tolist() == [[0, 1], [2, 3], [4, 5]]
    assert pairs.images[3].source == images[3]


def test_numpy_array_bins_and_python2_bytes(tmp_path):
    images = [_jpeg(i) for i in range(2)]
    arrays = [np.frombuffer(b, dtype=np.uint8).reshape(-1, 1) for b in images]
    (tmp_path / "np.bin").write_bytes(pickle.dumps((arrays, [False]), protocol=2))
    read, issame = read_bin(tmp_path / "np.bin")
    assert read == images and issame.tolist() == [False]


def test_bad_bins(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.bin").write_bytes(pickle.dumps(([Evil()], [True])))
    with pytest.raises(ValueError, match="not allowed"):
        read_bin(tmp_path / "evil.bin")
    write_bin(tmp_path / "odd.bin", [_jpeg(0), _jpeg(1)], [True])
    images, flags = read_bin(tmp_path / "odd.bin")
    (tmp_path / "odd.bin").write_bytes(pickle.dumps((images[:1], [True])))
    with pytest.raises(ValueError, match="expected 2N"):
        read_bin(tmp_path / "odd.bin")
    (tmp_path / "junk.bin").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a verification .bin"):
        read_bin(tmp_path / "junk.bin")
    with pytest.raises(ValueError, match="2 \\* 2"):
        write_bin(tmp_path / "w.bin", [b"a"], [True, False])


@pytest.mark.shared
def test_real_insightface_bin_loads(shared_dir):
    pairs = load_bin(shared_dir / "data" / "insightface-bin" / "small_lfw.bin")
    assert len(pairs) == 10 and len(pairs.images) == 20
    image = Image.open(io.BytesIO(pairs.images[0].source))
    assert image.size == (112, 112)
    assert pairs.issame.dtype == bool
