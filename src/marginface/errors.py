"""User errors: bad input the CLI reports as one line with exit code 2, never a traceback.

The library raises these with the context a user needs to fix the input (the file, the line, the
config key, the command-line flag); ``marginface.cli.main`` prints ``str(error)``. They derive
from ``ValueError`` (or, for paths, the matching ``OSError``) so that callers catching the
builtin kinds keep working. Any other exception reaching the CLI is an internal error (a bug):
one line saying so, exit code 1, the traceback under ``--debug``.

``hints`` (on :class:`MarginfaceError`) are command-line flags with the advice to use them, e.g.
``("--skip-bad-images", "to leave its pairs out and count them")``; the CLI shows a hint only when
the running command has that flag, so a message never names a flag the command lacks.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "MarginfaceError",
    "UserInputError",
    "ConfigError",
    "OutputPathError",
    "NotAFileError",
    "NotADirectoryInputError",
    "describe_os_error",
    "naming_file",
]


class MarginfaceError(Exception):
    """Base of the errors a user causes and can fix; ``hints``: (flag, advice) pairs."""

    def __init__(self, message: str, *, hints: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.hints = tuple(hints)


class UserInputError(MarginfaceError, ValueError):
    """A bad value in an argument, a file or a config."""


class ConfigError(UserInputError):
    """A config problem; the message names the dotted key, and the file and line where known."""


class OutputPathError(UserInputError):
    """An output path that cannot be written, found before any long work starts."""


class NotAFileError(MarginfaceError, IsADirectoryError):
    """A file was expected and a directory was given."""


class NotADirectoryInputError(MarginfaceError, NotADirectoryError):
    """A folder was expected and a file was given."""


# strerror words of the failures users meet, in the CLI's lower-case one-line style
_REASONS = {
    errno.ENOENT: "does not exist",
    errno.EISDIR: "is a directory, not a file",
    errno.ENOTDIR: "a component of the path is a file, not a directory",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EEXIST: "already exists",
    errno.ENAMETOOLONG: "file name too long",
    errno.EFBIG: "file too large",
    errno.EIO: "input/output error",
}


def describe_os_error(error: OSError) -> str:
    """``PATH: reason`` for an ``OSError`` that names its file; its own text otherwise."""
    if error.errno is None or (error.filename is None and not error.strerror):
        return str(error)
    reason = _REASONS.get(error.errno, error.strerror or str(error))
    if error.filename is None:
        return reason
    target = f"{error.filename}"
    if error.filename2 is not None:
        target += f" -> {error.filename2}"
    return f"{target}: {reason}"


@contextmanager
def naming_file(path: str | Path) -> Iterator[None]:
    """Give an ``OSError`` raised inside without a file name (``write`` on a full disk: errno
    only) the name ``path``, so the CLI can say which file could not be written."""
    try:
        yield
    except OSError as error:
        if error.filename is not None or error.errno is None:
            raise
        raise type(error)(error.errno, error.strerror, str(path)) from error
