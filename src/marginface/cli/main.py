"""``marginface`` entry point. Subcommands live one per module in this package.

Each subcommand module defines ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed namespace and returning an exit code.

Errors (docs/cli.md, "Errors and exit codes"): a user error -- a bad argument, file, config
key or output path (:mod:`marginface.errors`, ``ValueError``, ``OSError``, YAML) -- is ONE line
``marginface CMD: error: ...`` on stderr and exit code 2; Ctrl-C is one line and exit code 130.
Any other exception is a bug in marginface: one line ``internal error`` with the exception's
type, exit code 1. ``--debug`` (before or after the subcommand) prints the traceback as well.
Hints in a message name only flags the running command has.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import traceback
from collections.abc import Sequence

from marginface.errors import MarginfaceError, describe_os_error

__all__ = ["SUBCOMMAND_MODULES", "build_parser", "command_parser", "main"]

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

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's code for Ctrl-C

_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's one-line error (the usage is one ``--help`` away)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _sub_actions(parser: argparse.ArgumentParser) -> list[argparse._SubParsersAction]:
    return [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]


def _add_debug(parser: argparse.ArgumentParser) -> None:
    """``--debug`` on every subcommand too (SUPPRESS: an absent flag keeps the top-level value)."""
    for action in _sub_actions(parser):
        for sub in action.choices.values():
            sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the traceback of an error")
            _add_debug(sub)


def build_parser() -> argparse.ArgumentParser:
    from marginface import __version__

    parser = _Parser(
        prog="marginface",
        description="Train and evaluate face recognition with margin-based softmax losses.",
    )
    parser.add_argument("--version", action="version", version=f"marginface {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (also accepted after COMMAND)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"marginface.cli.{name}").register(subparsers)
    _add_debug(parser)
    return parser


def command_parser(parser: argparse.ArgumentParser,
                   args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)parser that parsed the running command (``caffe convert``'s, not ``caffe``'s)."""
    for action in _sub_actions(parser):
        chosen = getattr(args, action.dest, None)
        if chosen in action.choices:
            return command_parser(action.choices[chosen], args)
    return parser


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def user_message(error: BaseException, flags: set[str]) -> str:
    """The one-line text of a user error; hints naming a flag not in ``flags`` are left out."""
    if isinstance(error, UnicodeDecodeError):
        text = (f"a text input is not UTF-8 (byte 0x{error.object[error.start]:02x} at byte "
                f"{error.start}); rerun with --debug to see which file")
    elif isinstance(error, OSError) and not isinstance(error, MarginfaceError):
        text = describe_os_error(error)
    else:
        text = str(error) or type(error).__name__
    # inline hints ("...; pass --skip-bad-images to ...") stay only if the command has the flag
    clauses = text.split("; ")
    kept = [c for i, c in enumerate(clauses)
            if i == 0 or all(f in flags for f in _FLAG.findall(c))]
    for flag, advice in getattr(error, "hints", ()):
        if flag in flags:
            kept.append(f"pass {flag} {advice}")
    return " ".join(part.strip() for part in "; ".join(kept).splitlines() if part.strip())


def _is_user_error(error: BaseException) -> bool:
    import yaml

    return isinstance(error, (MarginfaceError, ValueError, OSError, yaml.YAMLError))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USER_ERROR
    name = f"marginface {args.command}"
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if args.debug:
            traceback.print_exc(file=sys.stderr)
        if _is_user_error(error):
            flags = _flags(command_parser(parser, args))
            print(f"{name}: error: {user_message(error, flags)}", file=sys.stderr)
            return EXIT_USER_ERROR
        if isinstance(error, MemoryError):
            print(f"{name}: error: out of memory", file=sys.stderr)
            return EXIT_INTERNAL_ERROR
        what = " ".join(f"{type(error).__name__}: {error}".split())
        hint = "" if args.debug else "; rerun with --debug for the traceback"
        print(f"{name}: internal error (a bug in marginface, please report it): {what}{hint}",
              file=sys.stderr)
        return EXIT_INTERNAL_ERROR
