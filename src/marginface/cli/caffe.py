"""``marginface caffe summary NET.prototxt``: layers, blob shapes and parameter counts."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("caffe", help="work with Caffe nets (prototxt, caffemodel)")
    sub = parser.add_subparsers(dest="caffe_command", metavar="ACTION")
    summary = sub.add_parser("summary", help="print layers, top blob shapes, parameter counts")
    summary.add_argument("net", help="the net's .prototxt")
    summary.add_argument("--phase", default="TRAIN", choices=["TRAIN", "TEST"])
    summary.add_argument("--input-shape", action="append", default=[], metavar="NAME=D1,D2,..",
                         help="shape of an input blob, e.g. data=1,3,112,96 (repeatable)")
    summary.set_defaults(func=_summary)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _summary(args: argparse.Namespace) -> int:
    from marginface.caffe.summary import parse_input_shape, summarize_net

    shapes = dict(parse_input_shape(s) for s in args.input_shape)
    print(summarize_net(args.net, args.phase, shapes).to_text())
    return 0
