"""``marginface caffe summary NET.prototxt``: layers, blob shapes and parameter counts;
``marginface caffe convert NET.prototxt WEIGHTS.caffemodel --model NAME -o OUT.safetensors``:
a Caffe face model as a marginface model file."""

from __future__ import annotations

import argparse

from marginface.cli.options import check_outputs, positive_int

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("caffe", help="work with Caffe nets (prototxt, caffemodel)")
    sub = parser.add_subparsers(dest="caffe_command", metavar="ACTION")
    summary = sub.add_parser("summary", help="print layers, top blob shapes, parameter counts")
    summary.add_argument("net", help="the net's .prototxt")
    summary.add_argument("--phase", default="TRAIN", choices=["TRAIN", "TEST"])
    summary.add_argument("--input-shape", action="append", default=[], metavar="NAME=D1,D2,..",
                         help="shape of an input blob, e.g. data=1,3,112,96 (repeatable)")
    summary.set_defaults(func=_summary)
    convert = sub.add_parser("convert", help="convert a Caffe face model into a marginface "
                             "model file (safetensors + config)")
    convert.add_argument("net", help="the deploy .prototxt")
    convert.add_argument("weights", help="the .caffemodel")
    convert.add_argument("--model", required=True, help="registered model name, e.g. sphere20")
    convert.add_argument("--input-size", default=None, metavar="HxW",
                         help="input size, e.g. 112x96 (default: the net's input shape)")
    convert.add_argument("--embedding-dim", type=positive_int, default=None,
                         help="embedding size (default: the output blob's size)")
    convert.add_argument("--output-blob", default=None,
                         help="the embedding blob (default: the last layer's top)")
    convert.add_argument("--channel-order", default=None, choices=["RGB", "BGR"],
                         help="channel order the net expects (default BGR, Caffe's)")
    convert.add_argument("--dry-run", action="store_true",
                         help="print the mapping and check shapes; write nothing")
    convert.add_argument("-o", "--output", required=True, help="the model file to write")
    convert.set_defaults(func=_convert)
    parser.set_defaults(func=_no_action)


def _no_action(args: argparse.Namespace) -> int:
    raise ValueError("give an ACTION: summary or convert (see marginface caffe --help)")


def _summary(args: argparse.Namespace) -> int:
    from marginface.caffe.summary import parse_input_shape, summarize_net

    shapes = dict(parse_input_shape(s) for s in args.input_shape)
    print(summarize_net(args.net, args.phase, shapes).to_text())
    return 0


def _convert(args: argparse.Namespace) -> int:
    check_outputs((None if args.dry_run else args.output, "--output", "file"))
    from marginface.caffe.convert import convert_caffe_to_file

    size = None
    if args.input_size:
        try:
            height, width = (int(v) for v in args.input_size.lower().split("x"))
        except ValueError:
            raise ValueError(f"--input-size must look like 112x96, got {args.input_size!r}") \
                from None
        size = (height, width)
    report = convert_caffe_to_file(args.net, args.weights, args.output, model_name=args.model,
                                   input_size=size, embedding_dim=args.embedding_dim,
                                   output_blob=args.output_blob, channel_order=args.channel_order,
                                   dry_run=args.dry_run)
    print(report.table())
    print("dry run: nothing written" if args.dry_run else f"wrote {args.output}")
    return 0
