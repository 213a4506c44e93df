"""Binary .caffemodel I/O: the wire format, the MTCNN files, round trips, V1 layout, bad files."""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marginface.caffe.caffemodel import (
    LayerBlobs,
    encode_caffemodel,
    parse_caffemodel,
    read_caffemodel,
    write_caffemodel,
)
from marginface.caffe.wire import (
    FIXED32,
    WireError,
    as_int64,
    encode_bytes_field,
    encode_key,
    encode_packed_reals,
    encode_real_field,
    encode_string_field,
    encode_varint,
    encode_varint_field,
    iter_fields,
    read_varint,
)


# ---------------------------------------------------------------- wire format
def test_varint_known_bytes():
    assert encode_varint(1) == b"\x01"
    assert encode_varint(300) == b"\xac\x02"  # the protobuf documentation's example
    assert encode_varint(-1) == b"\xff" * 9 + b"\x01"
    assert read_varint(b"\xac\x02", 0) == (300, 2)
    assert encode_key(100, 2) == b"\xa2\x06"  # NetParameter.layer, as in the MTCNN files


@settings(max_examples=60, deadline=None)
@given(st.integers(-(2 ** 63), 2 ** 63 - 1))
def test_varint_round_trip(value):
    raw = encode_varint(value)
    decoded, end = read_varint(raw, 0)
    assert end == len(raw) and as_int64(decoded) == value


def test_wire_errors_carry_offsets():
    with pytest.raises(WireError, match="truncated varint at byte offset 3"):
        read_varint(b"\x00\x00\x00\x80\x80", 3)
    with pytest.raises(WireError, match="offset 0"):
        list(iter_fields(encode_key(5, 2) + encode_varint(10) + b"abc"))
    with pytest.raises(WireError, match="wire type 3"):
        list(iter_fields(encode_key(2, 3)))
    with pytest.raises(WireError, match="field number 0 at byte offset 2"):
        list(iter_fields(encode_varint_field(1, 7) + b"\x01"))
    with pytest.raises(WireError, match="fixed32"):
        list(iter_fields(encode_key(5, FIXED32) + b"\x00\x00"))


# ---------------------------------------------------------------- real files
MTCNN_EXPECTED = {
    # layer: blob shapes, worked out by hand from det*.prototxt (num_output, kernel, input size)
    "det1": {"conv1": [(10, 3, 3, 3), (10,)], "PReLU1": [(10,)],
             "conv2": [(16, 10, 3, 3), (16,)], "PReLU2": [(16,)],
             "conv3": [(32, 16, 3, 3), (32,)], "PReLU3": [(32,)],
             "conv4-1": [(2, 32, 1, 1), (2,)], "conv4-2": [(4, 32, 1, 1), (4,)]},
    # RNet 24 -> conv3 22 -> pool 11 -> conv3 9 -> pool 4 -> conv2 3: 64*3*3 = 576 inputs
    "det2": {"conv1": [(28, 3, 3, 3), (28,)], "conv2": [(48, 28, 3, 3), (48,)],
             "conv3": [(64, 48, 2, 2), (64,)], "conv4": [(128, 576), (128,)],
             "prelu4": [(128,)], "conv5-1": [(2, 128), (2,)], "conv5-2": [(4, 128), (4,)]},
    # ONet 48 -> 46 -> 23 -> 21 -> 10 -> 8 -> 4 -> conv2 3: 128*3*3 = 1152 inputs
    "det3": {"conv1": [(32, 3, 3, 3), (32,)], "conv2": [(64, 32, 3, 3), (64,)],
             "conv3": [(64, 64, 3, 3), (64,)], "conv4": [(128, 64, 2, 2), (128,)],
             "conv5": [(256, 1152), (256,)], "prelu5": [(256,)],
             "conv6-1": [(2, 256), (2,)], "conv6-2": [(4, 256), (4,)],
             "conv6-3": [(10, 256), (10,)]},
}


@pytest.mark.shared
@pytest.mark.parametrize("net", ["det1", "det2", "det3"])
def test_mtcnn_caffemodels_read(shared_dir, net):
    layers = read_caffemodel(shared_dir / "caffe" / "mtcnn" / f"{net}.caffemodel")
    by_name = {layer.name: layer for layer in layers}
    for name, shapes in MTCNN_EXPECTED[net].items():
        assert [b.shape for b in by_name[name].blobs] == shapes, name
        assert all(b.dtype == np.float32 and np.isfinite(b).all() for b in by_name[name].blobs)
        assert np.abs(by_name[name].blobs[0]).max() > 0  # real trained weights, not zeros
    assert by_name["conv1"].type == "Convolution"
    # every layer with blobs is a parametric layer named in the deploy prototxt
    text = (shared_dir / "caffe" / "mtcnn" / f"{net}.prototxt").read_text()
    declared = set(re.findall(r'name:\s*"([^"]+)"', text))
    with_blobs = {layer.name for layer in layers if layer.blobs}
    assert with_blobs - declared <= {"conv5-3"}  # det2's file holds a landmark head too


@pytest.mark.shared
def test_mtcnn_round_trip_identical(shared_dir, tmp_path):
    layers = read_caffemodel(shared_dir / "caffe" / "mtcnn" / "det2.caffemodel")
    out = tmp_path / "det2.caffemodel"
    write_caffemodel(out, layers, name="RNet")
    again = read_caffemodel(out)
    assert [(x.name, x.type) for x in again] == [(x.name, x.type) for x in layers]
    for a, b in zip(layers, again, strict=True):
        assert len(a.blobs) == len(b.blobs)
        for x, y in zip(a.blobs, b.blobs, strict=True):
            assert x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x, y)


@pytest.mark.shared
def test_truncated_mtcnn_file(shared_dir, tmp_path):
    raw = (shared_dir / "caffe" / "mtcnn" / "det1.caffemodel").read_bytes()
    cut = tmp_path / "cut.caffemodel"
    # the conv1 weights of PNet lie in the first ~2 kB (after the HDF5 data layer)
    for size in (len(raw) - 101, len(raw) // 2, 1200):
        cut.write_bytes(raw[:size])
        with pytest.raises(ValueError, match=r"cut\.caffemodel: layer \d+ '[^']+'.*byte offset"):
            read_caffemodel(cut)


# ---------------------------------------------------------------- synthetic
def _layers() -> list[LayerBlobs]:
    rng = np.random.default_rng(0)
    return [
        LayerBlobs("conv1", "Convolution", [rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
                                            rng.standard_normal(4).astype(np.float32)]),
        LayerBlobs("relu1", "ReLU", []),
        LayerBlobs("scale", "Scale", [np.array(2.5, dtype=np.float32)]),  # 0-d blob
        LayerBlobs("fc", "InnerProduct", [rng.standard_normal((5, 36))]),  # float64
        LayerBlobs("empty", "Data", [np.zeros((0, 3), np.float32)]),
    ]


def test_round_trip_synthetic(tmp_path):
    path = tmp_path / "net.caffemodel"
    layers = _layers()
    write_caffemodel(path, layers, name="toy")
    again = read_caffemodel(path)
    assert [(x.name, x.type, len(x.blobs)) for x in again] == [
        (x.name, x.type, len(x.blobs)) for x in layers]
    for a, b in zip(layers, again, strict=True):
        for x, y in zip(a.blobs, b.blobs, strict=True):
            assert x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x, y)


def test_truncation_anywhere_is_a_clear_error():
    raw = encode_caffemodel(_layers())
    for cut in (3, 20, len(raw) // 2, len(raw) - 1):
        with pytest.raises(ValueError, match=r"byte offset \d+"):
            parse_caffemodel(raw[:cut])


def test_wrong_count_names_layer_and_shape():
    blob = encode_bytes_field(7, encode_bytes_field(1, encode_varint(3) + encode_varint(2)))
    blob += encode_packed_reals(5, np.arange(5, dtype=np.float32), "<f4")
    layer = encode_string_field(1, "bad") + encode_string_field(2, "InnerProduct")
    layer += encode_bytes_field(7, blob)
    pattern = r"layer 0 'bad' \(InnerProduct.*\(3, 2\) needs 6 values but holds 5 at byte off"
    with pytest.raises(ValueError, match=pattern):
        parse_caffemodel(encode_bytes_field(100, layer))


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nope.caffemodel"):
        read_caffemodel("nope.caffemodel")


def _v1_blob(values: np.ndarray, packed: bool) -> bytes:
    """Legacy 4-D BlobProto: num 1, channels 2, height 3, width 4, data 5 (packed or not)."""
    n, c, h, w = values.shape
    body = b"".join(encode_varint_field(k, v) for k, v in zip((1, 2, 3, 4), (n, c, h, w),
                                                                strict=True))
    flat = values.reshape(-1)
    if packed:
        body += encode_packed_reals(5, flat, "<f4")
    else:
        body += b"".join(encode_real_field(5, float(x), FIXED32) for x in flat)
    return body


def _v1_layer(name: str, type_enum: int, blobs: list[bytes]) -> bytes:
    """V1LayerParameter: bottom 2, top 3, name 4, type 5 (enum), blobs 6, blobs_lr 7."""
    body = encode_string_field(2, "data") + encode_string_field(3, name)
    body += encode_string_field(4, name) + encode_varint_field(5, type_enum)
    body += b"".join(encode_bytes_field(6, b) for b in blobs)
    body += encode_key(7, FIXED32) + struct.pack("<f", 1.0)  # blobs_lr: skipped
    return body


def test_v1_layout_reads():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((8, 3, 5, 5)).astype(np.float32)
    b = rng.standard_normal((1, 1, 1, 8)).astype(np.float32)
    fc = rng.standard_normal((1, 1, 10, 8)).astype(np.float32)
    net = encode_string_field(1, "old")
    net += encode_bytes_field(2, _v1_layer("conv1", 4, [_v1_blob(w, True), _v1_blob(b, False)]))
    net += encode_bytes_field(2, _v1_layer("relu1", 18, []))
    net += encode_bytes_field(2, _v1_layer("ip1", 14, [_v1_blob(fc, False)]))
    net += encode_bytes_field(2, _v1_layer("loss", 21, []))
    layers = parse_caffemodel(net)
    assert [(x.name, x.type) for x in layers] == [
        ("conv1", "Convolution"), ("relu1", "ReLU"), ("ip1", "InnerProduct"),
        ("loss", "SoftmaxWithLoss")]
    assert np.array_equal(layers[0].blobs[0], w) and np.array_equal(layers[0].blobs[1], b)
    assert layers[2].blobs[0].shape == (1, 1, 10, 8) and np.array_equal(layers[2].blobs[0], fc)


_shapes = st.lists(st.integers(0, 4), min_size=0, max_size=4).map(tuple)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=8), st.sampled_from(["Convolution", "PReLU", "Ä"]),
                          st.lists(st.tuples(_shapes, st.sampled_from([np.float32, np.float64])),
                                   max_size=3)), max_size=4),
       st.integers(0, 2 ** 31))
def test_round_trip_property(spec, seed):
    rng = np.random.default_rng(seed)
    layers = [LayerBlobs(name, kind, [rng.standard_normal(shape).astype(dtype)
                                      for shape, dtype in blobs])
              for name, kind, blobs in spec]
    again = parse_caffemodel(encode_caffemodel(layers))
    assert len(again) == len(layers)
    for a, b in zip(layers, again, strict=True):
        assert (a.name, a.type, len(a.blobs)) == (b.name, b.type, len(b.blobs))
        for x, y in zip(a.blobs, b.blobs, strict=True):
            assert x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x, y)
