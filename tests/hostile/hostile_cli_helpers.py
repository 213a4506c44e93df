"""Helpers of the hostile CLI tests: run ``marginface`` in-process and check the one-line error."""

from __future__ import annotations

from pathlib import Path

from marginface.cli.main import main


def run_cli(capsys, *argv: str | Path) -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of ``marginface ARGV``; argparse exits become codes."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 2
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(err: str, *needles: str) -> str:
    """The single stderr line; asserts no traceback and that every needle is in it."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{err}"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]
