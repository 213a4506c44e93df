"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one.

Every writer goes the same way: a temporary file in the target's directory (same file system, so
the rename is atomic), flushed and fsync'ed, renamed over the target with ``os.replace``, then the
directory fsync'ed so the rename itself survives a power cut. On any error the temporary file is
removed and the old target is left as it was. Temporary files are named ``.<name>.<random>.tmp``
(hidden, and easy to sweep after a hard crash: see :data:`TEMP_GLOB`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["TEMP_GLOB", "atomic_write", "atomic_path", "atomic_paths", "atomic_write_bytes",
           "atomic_write_text"]

#: Matches the temporary files a crash mid-write can leave beside their target.
TEMP_GLOB = ".*.tmp"


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open a directory; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` durably.

    For writers that insist on a file name (``savefig``, ``onnx.save``): write to the yielded
    path; it is fsync'ed and renamed over ``path`` when the block ends without an error.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb+") as handle:  # the writer may have closed without syncing
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


@contextmanager
def atomic_paths(*paths: str | os.PathLike[str]) -> Iterator[list[Path]]:
    """Yield temporary paths beside ``paths``; on success they replace them as one set.

    For files that are only valid together (a ``.rec`` and its ``.idx``; an ``.npy`` and its list
    of names). Every temporary file is written and fsync'ed before any target is touched, so an
    error anywhere in the block leaves every old file as it was. The commit then removes the
    LAST path (the one that makes the set usable, e.g. the ``.idx``), replaces the others, and
    puts the last one back last: a crash inside the commit leaves a set without its last file
    (an error for the reader), never a new file beside a stale companion.
    """
    targets = [Path(p) for p in paths]
    if not targets or len({t.resolve() for t in targets}) != len(targets):
        raise ValueError(f"atomic_paths needs distinct paths, got {[str(t) for t in targets]}")
    temps: list[Path] = []
    try:
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                        dir=target.parent)
            os.close(fd)
            temps.append(Path(name))
        yield list(temps)
        for tmp in temps:
            with tmp.open("rb+") as handle:
                os.fsync(handle.fileno())
        targets[-1].unlink(missing_ok=True)
        for tmp, target in zip(temps, targets, strict=True):
            os.replace(tmp, target)
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise
    for directory in {t.parent for t in targets}:
        _fsync_dir(directory)


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb", *,
                 encoding: str | None = None, newline: str | None = None) -> Iterator[IO[Any]]:
    """Open ``path`` for writing (``"wb"`` or ``"w"``) so that it appears whole or not at all."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(name, target)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def atomic_write_bytes(path: str | os.PathLike[str], *chunks: bytes | memoryview) -> Path:
    """Write the concatenated ``chunks`` to ``path`` atomically; returns the path."""
    with atomic_write(path, "wb") as handle:
        for chunk in chunks:
            handle.write(chunk)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, *,
                      encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_write(path, "w", encoding=encoding) as handle:
        handle.write(text)
    return Path(path)
