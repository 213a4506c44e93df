"""Input paths and text files, checked with the error a user can act on.

``require_file`` / ``require_dir`` tell a missing path from one of the wrong kind (a directory
given for a file is "is a directory", not "does not exist"); ``read_text`` decodes UTF-8 and
names the file, line and column of a byte that is not UTF-8 (Python's own error gives only a
byte position).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from marginface.errors import NotADirectoryInputError, NotAFileError, UserInputError

__all__ = ["require_file", "require_dir", "read_text", "read_json", "finite_number"]


def require_file(path: str | Path, what: str = "file") -> Path:
    """``path`` as a Path if it is a file; FileNotFoundError / NotAFileError naming ``what``."""
    path = Path(path)
    if path.is_dir():
        raise NotAFileError(f"{what} {path} is a directory, not a file")
    if not path.is_file():
        if path.exists() or path.is_symlink():
            raise FileNotFoundError(f"{what} {path} is not a regular file (or a broken link)")
        raise FileNotFoundError(f"{what} {path} does not exist")
    return path


def require_dir(path: str | Path, what: str = "folder") -> Path:
    """``path`` as a Path if it is a directory; FileNotFoundError / NotADirectoryInputError."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryInputError(f"{what} {path} is a file, not a folder")
    if not path.is_dir():
        raise FileNotFoundError(f"{what} {path} does not exist")
    return path


def read_text(path: str | Path, what: str = "file") -> str:
    """The UTF-8 text of file ``path`` (a leading BOM dropped); bad bytes named by line/column."""
    path = require_file(path, what)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        start = error.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data.count(b"\n", 0, start) + 1
        column = start - (data.rfind(b"\n", 0, start) + 1) + 1
        raise UserInputError(
            f"{what} {path}, line {line}, column {column}: not UTF-8 text "
            f"(byte 0x{data[start]:02x}); save the file as UTF-8") from None


def read_json(path: str | Path, what: str = "file") -> Any:
    """The JSON value of file ``path``; a syntax error names the file, line and column."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise UserInputError(f"{what} {path}, line {error.lineno}, column {error.colno}: "
                             f"not valid JSON ({error.msg})") from None


def finite_number(value: Any, where: str) -> float:
    """``float(value)`` for a finite int/float (not bool); a UserInputError naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserInputError(f"{where} must be a finite number, got {value!r}")
    return float(value)
