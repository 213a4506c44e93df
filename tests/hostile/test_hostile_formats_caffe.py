"""Hostile Caffe files: prototxt fields out of range or of the wrong type (named by
source:line:column), absurd nesting, undefined bottoms, empty or cut caffemodels."""

from __future__ import annotations

import re

import pytest

from marginface.caffe import load_net
from marginface.caffe.caffemodel import LayerBlobs, read_caffemodel, write_caffemodel
from marginface.caffe.prototxt import MAX_DEPTH, parse_prototxt

HEAD = 'name: "t"\ninput: "data"\ninput_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'


def _conv(param: str) -> str:
    return HEAD + ('layer { name: "c" type: "Convolution" bottom: "data" top: "c"\n'
                   f'  convolution_param {{ {param} }} }}\n')


def _refused(text: str, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        load_net(text, "TEST")


@pytest.mark.fault(kind="prototxt", fault="kernel_size 0 / fractional / negative pad / huge",
                   behaviour="ValueError with source:line:column, the layer, the field and value")
@pytest.mark.parametrize("param, pattern", [
    ("num_output: 4 kernel_size: 0", r"<text>:5:50: layer 'c' \(Convolution\): kernel_size "
                                     r"must be a whole number in \[1, 65536\], got 0"),
    ("num_output: 4 kernel_size: 2.5", r"<text>:5:50: .*kernel_size .* got 2.5"),
    ("num_output: 4 kernel_size: 3 pad: -1", r"<text>:5:57: .*pad must be .*\[0, 65536\], got -1"),
    ("num_output: 4 kernel_size: 3 stride: 0", r"<text>:5:60: .*stride .* got 0"),
    ("num_output: 4 kernel_h: 3 kernel_w: 0", r"<text>:5:59: .*kernel_w .* got 0"),
    ("num_output: 4 kernel_size: 99999999", r"kernel_size .* got 99999999"),
    ("num_output: 4 kernel_size: \"3\"", r"kernel_size .* got '3'"),
], ids=["kernel-0", "kernel-2.5", "pad-negative", "stride-0", "kernel_w-0", "kernel-huge",
        "kernel-string"])
def test_convolution_window_fields(param, pattern):
    _refused(_conv(param), pattern)


@pytest.mark.fault(kind="prototxt", fault="num_output negative / zero / huge / fractional",
                   behaviour="ValueError with source:line:column before any weight is allocated")
@pytest.mark.parametrize("value", ["-4", "0", "1000000000000", "2.5"])
def test_num_output_range(value):
    got = re.escape(value)
    _refused(_conv(f"num_output: {value} kernel_size: 3"),
             rf"<text>:5:35: .*num_output must be a whole number in \[1, 16777216\], got {got}")
    inner = HEAD + ('layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"\n'
                    f'  inner_product_param {{ num_output: {value} }} }}\n')
    _refused(inner, rf"<text>:5:37: layer 'fc' \(InnerProduct\): num_output .* got {got}")


@pytest.mark.fault(kind="prototxt", fault="kernel larger than the input",
                   behaviour="ValueError naming the layer, before the weight is allocated")
def test_kernel_larger_than_input():
    _refused(_conv("num_output: 4 kernel_size: 60000"), r"input 8x8 too small for kernel")


@pytest.mark.fault(kind="prototxt", fault=f"messages nested {MAX_DEPTH + 1000} levels deep",
                   behaviour="ValueError with line:column, no RecursionError")
def test_absurd_nesting():
    depth = MAX_DEPTH + 1000
    text = "a { " * depth + "} " * depth
    with pytest.raises(ValueError, match=rf"<text>:1:{4 * MAX_DEPTH + 3}: messages nested "
                                         rf"more than {MAX_DEPTH} levels deep"):
        parse_prototxt(text)
    parse_prototxt("a { " * MAX_DEPTH + "} " * MAX_DEPTH)  # as deep as allowed: fine


@pytest.mark.fault(kind="prototxt", fault="undefined bottom (a typo) in a net with inputs",
                   behaviour="ValueError with source:line:column naming the blob and the inputs; "
                             "fragments without inputs and label bottoms keep working")
def test_undefined_bottom_is_an_error():
    text = HEAD + ('layer { name: "c" type: "Convolution" bottom: "dat" top: "c"\n'
                   '  convolution_param { num_output: 4 kernel_size: 3 } }\n')
    _refused(text, r"<text>:4:47: layer 'c' \(Convolution, line 4\): bottom blob 'dat' is "
                   r"produced by no earlier layer and is not an input of the net "
                   r"\(inputs: \['data'\]")
    fragment = ('layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc"\n'
                '  inner_product_param { num_output: 3 } }\n')
    assert load_net(fragment, "TEST").input_names == ["x"]


@pytest.mark.fault(kind="caffemodel", fault="empty file / 7 bytes / cut before the first blob",
                   behaviour="ValueError naming the file and its size (not a warning)")
@pytest.mark.parametrize("data", [b"", b"\x0a\x05abcde", b"\x0a\x03net"],
                         ids=["empty", "7-bytes", "name-only"])
def test_empty_caffemodel_is_an_error(tmp_path, data):
    path = tmp_path / "w.caffemodel"
    path.write_bytes(data)
    pattern = rf"w.caffemodel: no layer with weights in its {len(data)} bytes"
    with pytest.raises(ValueError, match=pattern):
        read_caffemodel(path)


@pytest.mark.fault(kind="caffemodel", fault="loading an empty caffemodel into a net",
                   behaviour="ValueError, the net's weights untouched")
def test_loading_empty_caffemodel_into_a_net(tmp_path):
    from marginface.caffe.weights import load_caffemodel

    net = load_net(_conv("num_output: 4 kernel_size: 3"), "TEST")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    path = tmp_path / "w.caffemodel"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="no layer with weights"):
        load_caffemodel(net, path)
    assert all((before[k] == v).all() for k, v in net.state_dict().items())
    write_caffemodel(path, [LayerBlobs("c", "Convolution", [b.numpy() for b in before.values()])])
    assert read_caffemodel(path)[0].name == "c"


@pytest.mark.fault(kind="prototxt", fault="input shape dim 0 / negative / fractional / 1e12; "
                   "data layer batch_size 0", behaviour="ValueError with source:line:column")
@pytest.mark.parametrize("text, pattern", [
    ('input: "data"\ninput_shape { dim: 1 dim: 0 dim: 8 dim: 8 }\n',
     r"<text>:2:27: input_shape of 'data': dim must be .* got 0"),
    ('input: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: -8\ninput_dim: 8\n',
     r"<text>:4:12: net input: input_dim .* got -8"),
    ('input: "data"\ninput_shape { dim: 1 dim: 3 dim: 1e12 dim: 8 }\n', r"got 1000000000000.0"),
    ('layer { name: "d" type: "Input" top: "data"\n  input_param { shape { dim: 1 dim: 2.5 } } }\n',
     r"<text>:2:37: layer 'd' \(Input\): dim .* got 2.5"),
    ('layer { name: "d" type: "ImageData" top: "data" top: "label"\n'
     '  image_data_param { source: "x.txt" batch_size: 0 } }\n',
     r"<text>:2:50: layer 'd' \(ImageData\): batch_size .* got 0"),
], ids=["dim-0", "input_dim-negative", "dim-1e12", "Input-dim-2.5", "batch_size-0"])
def test_input_shapes_and_batch_size(text, pattern):
    _refused(text, pattern)


@pytest.mark.fault(kind="prototxt", fault="lr_mult nan / decay_mult -1 / loss_weight a string",
                   behaviour="ValueError with source:line:column (a NaN multiplier would train "
                             "silently to NaN)")
@pytest.mark.parametrize("field, pattern", [
    ("param { lr_mult: nan }", r"<text>:4:80: .*lr_mult must be a finite number >= 0, got nan"),
    ("param { decay_mult: -1 }", r"<text>:4:83: .*decay_mult must be .* >= 0, got -1"),
    ('loss_weight: "x"', r"<text>:4:76: .*loss_weight must be a finite number, got 'x'"),
], ids=["lr_mult-nan", "decay_mult-negative", "loss_weight-string"])
def test_multipliers_and_loss_weights(field, pattern):
    text = HEAD + ('layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
                   f'{field}\n  convolution_param {{ num_output: 4 kernel_size: 3 }} }}\n')
    _refused(text, pattern)


@pytest.mark.fault(kind="prototxt", fault="a directory given as the prototxt",
                   behaviour="exit 2, one line: 'prototxt file DIR is a directory, not a file'")
def test_prototxt_directory_is_named_as_a_directory(tmp_path, capsys):
    from marginface.cli.main import main

    assert main(["caffe", "summary", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"prototxt file {tmp_path} is a directory, not a file" in err[0]
