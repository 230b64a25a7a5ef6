"""Positions inside a JSON document: the `json` module does not say where nested values are, so a
small scan over the (already syntax-checked) text finds an object's keys and an array's elements,
and `raw_decode` reads each one where it starts."""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass
from typing import Any

from wfbatch.core.parsing.entries import JsonReader, Position, duplicate_keys_message
from wfbatch.core.parsing.errors import ErrorSink

_WHITESPACE = re.compile(r"[ \t\n\r]*")  # exactly JSON's whitespace


@dataclass(frozen=True)
class Member:
    """A top-level key of the spec and where its key and its value start."""

    key: str
    key_offset: int
    value_offset: int


class Invalid:
    """Stands for a value that could not be decoded (its error is already reported)."""


INVALID = Invalid()


class JsonText:
    """Positions inside a syntax-checked JSON document."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._strict = JsonReader()
        # Only used to find where a value ends: never fails on NaN or 5,000-digit numbers.
        self._skipper = json.JSONDecoder(parse_int=_ignore, parse_constant=_ignore)
        self._line_starts: list[int] | None = None

    def check_syntax(self, errors: ErrorSink) -> bool:
        try:
            self._skipper.decode(self.text)
        except json.JSONDecodeError as exc:
            errors.add(exc.lineno, exc.colno, f"invalid JSON: {exc.msg}")
            return False
        except RecursionError:
            errors.add(0, None, "invalid JSON: nested too deeply")
            return False
        return True

    def position(self, offset: int) -> Position:
        if self._line_starts is None:
            self._line_starts = [0, *(match.end() for match in re.finditer("\n", self.text))]
        line = bisect.bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1

    def skip_whitespace(self, offset: int) -> int:
        match = _WHITESPACE.match(self.text, offset)
        return match.end() if match else offset

    def end_of_value(self, offset: int) -> int:
        return int(self._skipper.raw_decode(self.text, offset)[1])

    def read(self, offset: int) -> tuple[Any, str | None]:
        """The value at `offset`, or INVALID and why (NaN, huge integer, duplicate keys inside)."""
        try:
            value, _ = self._strict.read_at(self.text, offset)
        except ValueError as exc:
            return INVALID, f"invalid JSON: {exc}"
        except RecursionError:
            return INVALID, "invalid JSON: nested too deeply"
        if self._strict.duplicate_keys:
            return INVALID, duplicate_keys_message(self._strict.duplicate_keys)
        return value, None

    def members(self, offset: int) -> list[Member]:
        """Keys of the object starting at `offset` ('{'), in order, duplicates included."""
        members: list[Member] = []
        offset = self.skip_whitespace(offset + 1)
        while self.text[offset] != "}":
            key_offset = offset
            key, offset = self._skipper.raw_decode(self.text, offset)
            offset = self.skip_whitespace(self.skip_whitespace(offset) + 1)  # past ':'
            members.append(Member(str(key), key_offset, offset))
            offset = self.skip_whitespace(self.end_of_value(offset))
            if self.text[offset] == ",":
                offset = self.skip_whitespace(offset + 1)
        return members

    def items(self, offset: int) -> list[int]:
        """Start offsets of the elements of the array starting at `offset` ('[')."""
        starts: list[int] = []
        offset = self.skip_whitespace(offset + 1)
        while self.text[offset] != "]":
            starts.append(offset)
            offset = self.skip_whitespace(self.end_of_value(offset))
            if self.text[offset] == ",":
                offset = self.skip_whitespace(offset + 1)
        return starts


def _ignore(_: str) -> int:
    return 0
