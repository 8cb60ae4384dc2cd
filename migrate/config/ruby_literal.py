"""Reads the Ruby literals GitLab's gitlab.rb uses for settings, without ever evaluating Ruby.

Supported: single- and double-quoted strings (no interpolation), integers and floats, true,
false, nil, symbols, hashes with ``=>`` or ``key:`` pairs, arrays, and ``#`` comments.
Anything else is an error naming its line.
"""

from __future__ import annotations

import re
from typing import Any

from migrate.errors import BadInput

_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\n]+|\#[^\n]*)
  | (?P<sq>'(?:[^'\\]|\\.)*')
  | (?P<dq>"(?:[^"\\]|\\.)*")
  | (?P<number>-?\d[\d_]*(?:\.\d[\d_]*)?)
  | (?P<label>[A-Za-z_][A-Za-z0-9_]*:(?!:))
  | (?P<symbol>:[A-Za-z_][A-Za-z0-9_]*[?!]?|:'(?:[^'\\]|\\.)*'|:"(?:[^"\\]|\\.)*")
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<arrow>=>)
  | (?P<punct>[{}\[\],])
""", re.X)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'", "s": " ", "e": "\x1b"}


class RubyLiteralParser:
    """Parses one literal starting at ``offset`` of ``text``; ``end`` is where it stopped."""

    def __init__(self, text: str, offset: int, source: str) -> None:
        self.text = text
        self.pos = offset
        self.source = source

    def fail(self, message: str, at: int | None = None) -> BadInput:
        line = self.text.count("\n", 0, self.pos if at is None else at) + 1
        return BadInput(f"{self.source}:{line}: {message}")

    def _next(self) -> tuple[str, str, int]:
        while True:
            match = _TOKEN.match(self.text, self.pos)
            if match is None:
                if self.pos >= len(self.text):
                    raise self.fail("unexpected end of file")
                raise self.fail(f"cannot read {self.text[self.pos:self.pos + 20]!r} (regmig reads literals only)")
            self.pos = match.end()
            kind = match.lastgroup or ""
            if kind != "space":
                return kind, match.group(), match.start()

    def _peek(self) -> tuple[str, str, int]:
        saved = self.pos
        try:
            return self._next()
        finally:
            self.pos = saved

    def value(self) -> Any:
        kind, token, start = self._next()
        if kind == "sq":
            return re.sub(r"\\([\\'])", r"\1", token[1:-1])
        if kind == "dq":
            if "#{" in token:
                raise self.fail("string interpolation is not a literal", start)
            return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), token[1:-1])
        if kind == "number":
            number = token.replace("_", "")
            return float(number) if "." in number else int(number)
        if kind == "symbol":
            return token[1:].strip("'\"")
        if kind == "word":
            if token in ("true", "false", "nil"):
                return {"true": True, "false": False, "nil": None}[token]
            raise self.fail(f"{token!r} is not a literal (regmig never evaluates Ruby)", start)
        if token == "{":
            return self._hash()
        if token == "[":
            return self._array()
        raise self.fail(f"unexpected {token!r}", start)

    def _hash(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        while True:
            kind, token, start = self._peek()
            if token == "}":
                self._next()
                return result
            if kind == "label":
                self._next()
                key: Any = token[:-1]
            else:
                key = self.value()
                _, arrow, at = self._next()
                if arrow != "=>":
                    raise self.fail(f"expected '=>' after hash key {key!r}", at)
            result[str(key)] = self.value()
            _, token, at = self._next()
            if token == "}":
                return result
            if token != ",":
                raise self.fail(f"expected ',' or '}}' in hash, found {token!r}", at)

    def _array(self) -> list[Any]:
        items: list[Any] = []
        while True:
            if self._peek()[1] == "]":
                self._next()
                return items
            items.append(self.value())
            _, token, at = self._next()
            if token == "]":
                return items
            if token != ",":
                raise self.fail(f"expected ',' or ']' in array, found {token!r}", at)


def parse_literal(text: str, offset: int = 0, source: str = "<text>") -> tuple[Any, int]:
    """The literal at ``offset`` and the offset just after it."""
    parser = RubyLiteralParser(text, offset, source)
    return parser.value(), parser.pos
