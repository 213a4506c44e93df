"""Parser for the protobuf text format that Caffe's ``.prototxt`` files use.

No schema is needed: the text format is self-describing enough to build a tree of
:class:`Message` nodes (field name -> list of values, in file order). Scalars become ``int``,
``float`` (``inf``/``nan`` included), ``bool`` (``true``/``false``), ``str`` (quoted, with C
escapes) or :class:`Ident` (a bare enum identifier such as ``TRAIN`` or ``MAX``, a ``str``
subclass). Supported syntax: ``#`` comments, ``name: value``, ``name { ... }``, ``name: { ... }``,
``<...>`` as message delimiters, ``name: [v1, v2]`` lists, optional ``,``/``;`` separators and
adjacent string concatenation. Errors raise ``ValueError`` giving ``source:line:column``.
Every value keeps the position of its field (:meth:`Message.at`) so that the net builder can
name ``source:line:column`` of a value it refuses. Messages nest at most :data:`MAX_DEPTH` deep
(Caffe nets nest 3 or 4 levels; a deeper file is an error, not a stack overflow).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["MAX_DEPTH", "Ident", "Message", "parse_prototxt", "read_prototxt"]

#: Deepest message nesting accepted (a Caffe net uses 3 or 4 levels).
MAX_DEPTH = 64


class Ident(str):
    """A bare identifier value (an enum name such as ``TRAIN``); compares equal to its text."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Ident({str.__repr__(self)})"


class Message:
    """One text-format message: repeated ``(field, value)`` pairs in file order."""

    def __init__(self, line: int = 0, column: int = 0, source: str = "<text>") -> None:
        self._fields: dict[str, list[Any]] = {}
        self._where: dict[str, list[tuple[int, int]]] = {}
        self.line = line
        self.column = column
        self.source = source

    def add(self, name: str, value: Any, line: int = 0, column: int = 0) -> None:
        """Append ``value`` to field ``name``; ``line``/``column``: where it was written."""
        self._fields.setdefault(name, []).append(value)
        self._where.setdefault(name, []).append((line, column))

    def at(self, name: str | None = None, index: int = -1) -> str:
        """``source:line:column`` of field ``name``'s value ``index`` (of the message itself
        when ``name`` is None or its position is unknown)."""
        positions = self._where.get(name, []) if name is not None else []
        line, column = positions[index] if positions and positions[index][0] else \
            (self.line, self.column)
        return f"{self.source}:{line}:{column}"

    def position(self, name: str, index: int = -1) -> tuple[int, int]:
        positions = self._where.get(name)
        return positions[index] if positions else (self.line, self.column)

    def has(self, name: str) -> bool:
        return name in self._fields

    def get(self, name: str, default: Any = None) -> Any:
        """The field's value (the last one, as protobuf does for a singular field) or default."""
        values = self._fields.get(name)
        return values[-1] if values else default

    def get_all(self, name: str) -> list[Any]:
        return list(self._fields.get(name, ()))

    def fields(self) -> list[str]:
        return list(self._fields)

    def items(self) -> Iterator[tuple[str, list[Any]]]:
        return iter(self._fields.items())

    def __contains__(self, name: object) -> bool:
        return name in self._fields

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and self._fields == other._fields

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._fields.items())
        return f"Message({inner})"

    def to_text(self, indent: int = 0) -> str:
        """Render back to the text format (round-trips through :func:`parse_prototxt`)."""
        pad = "  " * indent
        lines = []
        for name, values in self._fields.items():
            for value in values:
                if isinstance(value, Message):
                    lines.append(f"{pad}{name} {{")
                    body = value.to_text(indent + 1)
                    if body:
                        lines.append(body)
                    lines.append(f"{pad}}}")
                else:
                    lines.append(f"{pad}{name}: {_format_scalar(value)}")
        return "\n".join(lines)


def _format_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Ident):
        return str(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    return repr(value)


_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\n\f\v]+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)[fF]?
        |[-+]?(?:inf|infinity|nan)\b)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[{}<>:\[\],;])
    """,
    re.VERBOSE | re.IGNORECASE,
)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "a": "\a",
            "b": "\b", "f": "\f", "v": "\v", "?": "?"}


class _Lexer:
    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.tokens: list[tuple[str, str, int, int]] = []
        line, line_start, pos = 1, 0, 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None:
                raise ValueError(f"{source}:{line}:{pos - line_start + 1}: unexpected character "
                                 f"{text[pos]!r}")
            kind = match.lastgroup or ""
            value = match.group()
            if kind != "space":
                self.tokens.append((kind, value, line, pos - line_start + 1))
            newlines = value.count("\n")
            if newlines:
                line += newlines
                line_start = pos + value.rindex("\n") + 1
            pos = match.end()
        self.index = 0
        self.end = (line, pos - line_start + 1)

    def peek(self) -> tuple[str, str, int, int] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def next(self, what: str) -> tuple[str, str, int, int]:
        token = self.peek()
        if token is None:
            raise ValueError(f"{self.source}:{self.end[0]}:{self.end[1]}: unexpected end of "
                             f"input, expected {what}")
        self.index += 1
        return token

    def error(self, token: tuple[str, str, int, int], message: str) -> ValueError:
        return ValueError(f"{self.source}:{token[2]}:{token[3]}: {message}")


def _unescape(token: tuple[str, str, int, int], lexer: _Lexer) -> str:
    body = token[1][1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt in "xX":
            digits = re.match(r"[0-9a-fA-F]{1,2}", body[i + 2:])
            if not digits:
                raise lexer.error(token, "bad \\x escape in string")
            out.append(chr(int(digits.group(), 16)))
            i += 2 + len(digits.group())
        elif nxt in "01234567":
            digits = re.match(r"[0-7]{1,3}", body[i + 1:])
            assert digits is not None
            out.append(chr(int(digits.group(), 8)))
            i += 1 + len(digits.group())
        else:
            raise lexer.error(token, f"unknown escape \\{nxt} in string")
    return "".join(out)


def _number(text: str) -> int | float:
    t = text.lower()
    if re.fullmatch(r"[-+]?(inf|infinity|nan)", t):
        return float(t.replace("infinity", "inf"))
    if re.fullmatch(r"[-+]?0x[0-9a-f]+", t):
        return int(t, 16)
    t = t.rstrip("f")  # C-style float suffix, as in 1.5f
    if re.fullmatch(r"[-+]?\d+", t):
        return int(t)
    return float(t)


def _parse_scalar(lexer: _Lexer) -> Any:
    token = lexer.next("a value")
    kind, text = token[0], token[1]
    if kind == "string":
        parts = [_unescape(token, lexer)]
        while (nxt := lexer.peek()) is not None and nxt[0] == "string":
            parts.append(_unescape(lexer.next("string"), lexer))
        return "".join(parts)
    if kind == "number":
        return _number(text)
    if kind == "ident":
        if text in ("true", "True"):
            return True
        if text in ("false", "False"):
            return False
        if text.lower() in ("inf", "infinity", "nan"):
            return _number(text)
        return Ident(text)
    raise lexer.error(token, f"expected a value, found {text!r}")


def _child(lexer: _Lexer, opener: tuple[str, str, int, int], depth: int) -> Message:
    """The message opened by ``opener`` (``{`` or ``<``), parsed up to its closer."""
    if depth > MAX_DEPTH:
        raise lexer.error(opener, f"messages nested more than {MAX_DEPTH} levels deep")
    child = Message(opener[2], opener[3], lexer.source)
    _parse_body(lexer, child, "}" if opener[1] == "{" else ">", depth)
    return child


def _parse_body(lexer: _Lexer, message: Message, closer: str | None, depth: int = 0) -> None:
    while True:
        token = lexer.peek()
        if token is None:
            if closer is not None:
                lexer.next(f"{closer!r} closing the message opened at line {message.line}")
            return
        kind, text = token[0], token[1]
        if kind == "punct" and closer is not None and text == closer:
            lexer.next(closer)
            return
        if kind == "punct" and text in ",;":
            lexer.next(text)
            continue
        if kind != "ident":
            raise lexer.error(token, f"expected a field name, found {text!r}")
        lexer.next("field name")
        name, here = text, (token[2], token[3])
        colon = False
        nxt = lexer.peek()
        if nxt is not None and nxt[1] == ":" and nxt[0] == "punct":
            lexer.next(":")
            colon = True
            nxt = lexer.peek()
        if nxt is not None and nxt[0] == "punct" and nxt[1] in "{<":
            lexer.next(nxt[1])
            message.add(name, _child(lexer, nxt, depth + 1), *here)
        elif not colon:
            where = nxt if nxt is not None else ("", "", *lexer.end)
            raise lexer.error(where, f"expected ':' or '{{' after field {name!r}")
        elif nxt is not None and nxt[0] == "punct" and nxt[1] == "[":
            lexer.next("[")
            while True:
                closing = lexer.peek()
                if closing is not None and closing[1] == "]" and closing[0] == "punct":
                    lexer.next("]")
                    break
                if closing is not None and closing[0] == "punct" and closing[1] in "{<":
                    lexer.next(closing[1])
                    message.add(name, _child(lexer, closing, depth + 1), *here)
                else:
                    value_at = lexer.peek() or ("", "", *here)
                    message.add(name, _parse_scalar(lexer), value_at[2], value_at[3])
                sep = lexer.peek()
                if sep is not None and sep[0] == "punct" and sep[1] == ",":
                    lexer.next(",")
        else:
            value_at = nxt or ("", "", *here)
            message.add(name, _parse_scalar(lexer), value_at[2], value_at[3])


def parse_prototxt(text: str, source: str = "<text>") -> Message:
    """Parse protobuf text-format ``text`` into a :class:`Message` tree.

    ``source`` names the input in error messages (``source:line:column: ...``).
    """
    lexer = _Lexer(text, source)
    root = Message(1, 1, source)
    _parse_body(lexer, root, None)
    return root


def read_prototxt(path: str | Path) -> Message:
    """Read and parse a ``.prototxt`` file (``FileNotFoundError`` if it is missing, an error
    saying so if it is a directory)."""
    from marginface.inputs import require_file

    p = require_file(path, "prototxt file")
    return parse_prototxt(p.read_text(encoding="utf-8", errors="replace"), str(p))
