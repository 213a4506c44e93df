"""Helpers the benchmark scripts share: a docs section replaced in place, a process's peak RSS."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

from marginface.atomic import atomic_write_text

__all__ = ["replace_section", "peak_rss_mb"]


def replace_section(path: Path, heading: str, body: str) -> None:
    """Put ``heading`` + ``body`` in the markdown file ``path``: in place of the section that
    starts with ``heading`` (up to the next ``## ``), or appended."""
    old = path.read_text() if path.exists() else "# Performance\n"
    block = f"{heading}\n\n{body.strip()}\n"
    if heading + "\n" in old:
        head, rest = old.split(heading + "\n", 1)
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1:] if nxt >= 0 else ""
        new = head + block + ("\n" + tail if tail else "")
    else:
        new = old.rstrip("\n") + "\n\n" + block
    atomic_write_text(path, new)


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024
