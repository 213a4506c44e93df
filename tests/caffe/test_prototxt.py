"""The protobuf text-format parser: syntax coverage, values, round trip and errors."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marginface.caffe.prototxt import Ident, Message, parse_prototxt, read_prototxt

TEXT = r'''
name: "net"   # a comment
layer {
  name: 'conv1/x.y'
  type: "Convolution"
  bottom: "data" bottom: "extra";
  param { lr_mult: 1 decay_mult: 1 }
  param: { lr_mult: 2e0 decay_mult: -0 }
  convolution_param < num_output: 64 pad: 1 pad: 2 kernel_h: 3 >
  include { phase: TRAIN }
}
layers { type: CONVOLUTION blobs_lr: 1 blobs_lr: 2 }
values: [1, 2.5, -3e-2]
flags: true flags: false
big: inf small: -inf notnum: nan
hex: 0x1F
escaped: "a\"b\\c\n\t\101\x41"
joined: "ab" 'cd'
'''


def test_parse_structure_and_values():
    root = parse_prototxt(TEXT)
    assert root.get("name") == "net"
    layer = root.get("layer")
    assert isinstance(layer, Message)
    assert layer.get("name") == "conv1/x.y"
    assert layer.get_all("bottom") == ["data", "extra"]
    params = layer.get_all("param")
    assert [p.get("lr_mult") for p in params] == [1, 2.0]
    assert params[1].get("decay_mult") == 0
    conv = layer.get("convolution_param")
    assert conv.get_all("pad") == [1, 2] and conv.get("kernel_h") == 3
    phase = layer.get("include").get("phase")
    assert isinstance(phase, Ident) and phase == "TRAIN"
    assert root.get("layers").get("type") == "CONVOLUTION"
    assert root.get_all("values") == [1, 2.5, -0.03]
    assert root.get_all("flags") == [True, False]
    assert root.get("big") == math.inf and root.get("small") == -math.inf
    assert math.isnan(root.get("notnum"))
    assert root.get("hex") == 31
    assert root.get("escaped") == 'a"b\\c\n\tAA'
    assert root.get("joined") == "abcd"
    assert root.get("missing", 7) == 7 and not root.has("missing")
    assert layer.line == 3


def test_round_trip_through_text():
    root = parse_prototxt(TEXT)
    again = parse_prototxt(root.to_text())
    # nan != nan, so compare everything else
    assert again.get("layer") == root.get("layer")
    assert again.get("escaped") == root.get("escaped")
    assert again.get_all("values") == root.get_all("values")


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.integers(-10**12, 10**12),
                 st.floats(allow_nan=False, width=64),
                 st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20),
                 st.booleans()))
def test_scalar_round_trip(value):
    m = Message()
    m.add("v", value)
    assert parse_prototxt(m.to_text()).get("v") == value


@pytest.mark.parametrize("text, line, col, words", [
    ('layer {\n  name: "a"\n', 3, 1, "closing"),
    ('a: }', 1, 4, "expected a value"),
    ('x: "abc', 1, 4, "unexpected character"),
    ('layer {\n  name "x"\n}', 2, 8, "expected ':'"),
    ('a: 1 }', 1, 6, "field name"),
    ('a: 1\n  @', 2, 3, "unexpected character"),
])
def test_errors_give_line_and_column(text, line, col, words):
    with pytest.raises(ValueError, match=rf"net.prototxt:{line}:{col}: .*{words}"):
        parse_prototxt(text, "net.prototxt")


def test_read_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.prototxt"):
        read_prototxt(tmp_path / "nope.prototxt")


@pytest.mark.shared
def test_every_shared_prototxt_parses(shared_dir):
    files = sorted((shared_dir / "caffe").glob("*/*.prototxt"))
    assert len(files) >= 15
    for path in files:
        root = read_prototxt(path)
        assert root.fields(), path
        assert parse_prototxt(root.to_text()) == root, path
