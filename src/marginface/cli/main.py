"""``marginface`` entry point. Subcommands live one per module in this package.

Each subcommand module defines ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed namespace and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["SUBCOMMAND_MODULES", "build_parser", "main"]

# Module names under marginface.cli; each contributes one or more subcommands.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "train",
    "evaluate",
    "embed",
    "verify",
    "enroll",
    "identify",
    "evaluate_identification",
    "evaluate_ijb",
    "align",
    "detect",
    "pack",
    "export",
    "caffe",
    "subcenter_clean",
    "import_weights",
)


def build_parser() -> argparse.ArgumentParser:
    from marginface import __version__

    parser = argparse.ArgumentParser(
        prog="marginface",
        description="Train and evaluate face recognition with margin-based softmax losses.",
    )
    parser.add_argument("--version", action="version", version=f"marginface {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"marginface.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as error:
        # Bad input reaches the user as one clear line, not a traceback.
        print(f"marginface {args.command}: error: {error}", file=sys.stderr)
        return 2
