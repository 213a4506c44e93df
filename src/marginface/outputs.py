"""Output paths checked before any long work starts.

A command that would write after minutes of work (an evaluation, a training run, a pack) first
asks :func:`check_output_file` / :func:`check_output_dir`: the target must not be of the wrong
kind (a directory where a file goes, or the reverse), its nearest existing ancestor must be a
directory, and that directory must accept a new file (probed by creating and removing a temporary
file, which also catches read-only mounts and, for root, what ``chmod`` cannot deny). Errors are
:class:`marginface.errors.OutputPathError` naming the flag and the path. Nothing is created.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from marginface.errors import OutputPathError, describe_os_error

__all__ = ["check_output_file", "check_output_dir"]


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(".")


def _check_writable_dir(target: Path, flag: str, start: Path) -> None:
    """``start`` (or, if missing, its nearest existing ancestor) is a writable directory."""
    where = _nearest_existing(start.absolute())
    if not where.is_dir():
        raise OutputPathError(f"{flag} {target}: {where} is a file, not a directory")
    try:
        handle, probe = tempfile.mkstemp(prefix=".marginface-probe-", dir=where)
    except OSError as error:
        raise OutputPathError(f"{flag} {target}: cannot write in {where} "
                              f"({describe_os_error(error).rsplit(': ', 1)[-1]})") from None
    os.close(handle)
    os.unlink(probe)


def _path(path: str | Path, flag: str) -> Path:
    if not str(path).strip():
        raise OutputPathError(f"{flag}: the path is empty")
    return Path(path)


def check_output_file(path: str | Path, flag: str) -> Path:
    """``path`` can be written as a file (``flag`` names the option in the error)."""
    path = _path(path, flag)
    if path.is_dir():
        raise OutputPathError(f"{flag} {path}: is a directory; give a file name")
    _check_writable_dir(path, flag, path.parent)
    return path


def check_output_dir(path: str | Path, flag: str) -> Path:
    """``path`` is a writable directory, or can be created as one."""
    path = _path(path, flag)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{flag} {path}: is a file, not a directory")
    _check_writable_dir(path, flag, path)
    return path
