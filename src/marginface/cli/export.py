"""``marginface export MODEL_FILE --format onnx -o OUT.onnx``: export a saved model."""

from __future__ import annotations

import argparse
from pathlib import Path

from marginface.cli.options import check_outputs

__all__ = ["register"]


def _run(args: argparse.Namespace) -> int:
    check_outputs((args.output, "--output", "file"))
    from marginface.models.export import export_model

    path = export_model(args.model_file, args.output, format=args.format)
    print(f"wrote {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a marginface model file (safetensors) to ONNX",
        description="Export a model file written by save_model to ONNX with a dynamic batch axis.",
    )
    parser.add_argument("model_file", type=Path, help="safetensors model file (save_model)")
    parser.add_argument("--format", default="onnx", choices=["onnx"], help="export format")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output file")
    parser.set_defaults(func=_run)
