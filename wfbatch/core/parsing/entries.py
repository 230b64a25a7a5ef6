"""Turning raw field dicts into validated `ParsedEntry`s, with readable errors; shared by every format."""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from wfbatch.core.models import ParsedEntry, PromptEntry
from wfbatch.core.parsing.errors import ErrorSink, excerpt

FIELD_NAMES: tuple[str, ...] = tuple(PromptEntry.model_fields)
# Every entry becomes at least one job, all in one SQLite transaction, and costs ~1 KB here while parsed
# (1,000,000 entries measured ~10 s and ~1 GB): past this, splitting the file is wiser.
MAX_ENTRIES = 250_000
_MAX_INT_DIGITS = 100
# An integer `_parse_int` refuses has more than _MAX_INT_DIGITS characters, so _MAX_INT_DIGITS
# digits in a row at least; text without such a run needs no integer hook.
_LONG_DIGITS = re.compile(rf"\d{{{_MAX_INT_DIGITS}}}")
_MAX_SUGGESTABLE = 100  # difflib on a huge unknown key would only waste time
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

# (line, column) where a field's value was written, for formats that can tell per field (CSV).
Position = tuple[int, int | None]


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for a close match, else ''."""
    if len(name) > _MAX_SUGGESTABLE:
        return ""
    return _suggestion(name, tuple(choices))


@functools.lru_cache(maxsize=1024)
def _suggestion(name: str, choices: tuple[str, ...]) -> str:
    # Cached: a file with the same typo on 100,000 lines must not run difflib 100,000 times.
    matches = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def unknown_field_message(name: str) -> str:
    return f"unknown field {excerpt(name)}{did_you_mean(name, FIELD_NAMES)}"


def json_type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class JsonReader:
    """`json`, stricter: NaN, Infinity, out-of-range floats, 100+ digit integers and unpaired surrogate
    escapes (which could never be written out as UTF-8) are refused; duplicate keys are recorded.

    Duplicate keys are not an exception at decode time so the caller can say where they are.
    """

    def __init__(self) -> None:
        self.duplicate_keys: list[str] = []
        self._decoder = json.JSONDecoder(
            object_pairs_hook=self._make_object,
            parse_constant=_refuse_constant,
            parse_int=_parse_int,
            parse_float=_parse_float,
        )
        # The same without the integer hook, for text with no run of digits long enough to be
        # refused: a Python call per integer was a tenth of reading a .jsonl of numeric fields.
        self._short_ints_decoder = json.JSONDecoder(
            object_pairs_hook=self._make_object,
            parse_constant=_refuse_constant,
            parse_float=_parse_float,
        )
        self._screened_clean = False

    def screen(self, whole: str) -> None:
        """Look once at the whole text the following `loads` calls read parts of (a .jsonl's lines):
        with no 100-digit run and no surrogate escape anywhere, no part has one either, and each
        call skips its own two scans."""
        self._screened_clean = not _has_long_digit_run(whole) and _SURROGATE_ESCAPE.search(whole) is None

    def loads(self, text: str) -> Any:
        """A whole document (surrounding whitespace allowed). Raises ValueError / RecursionError."""
        self.duplicate_keys = []
        if self._screened_clean:
            return self._short_ints_decoder.decode(text)
        long_digits = _LONG_DIGITS.search(text) is not None
        value = (self._decoder if long_digits else self._short_ints_decoder).decode(text)
        _check_surrogates(value, text, 0, len(text))
        return value

    def read_at(self, text: str, pos: int) -> tuple[Any, int]:
        """The one JSON value starting exactly at `pos`, and where it ends."""
        self.duplicate_keys = []
        value, end = self._decoder.raw_decode(text, pos)
        _check_surrogates(value, text, pos, end)
        return value, end

    def _make_object(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    self.duplicate_keys.append(key)
                seen.add(key)
        return obj


# Every ASCII digit as "0": a run of _MAX_INT_DIGITS of them is then one substring search.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"0" * 9)
_ZERO_RUN = b"0" * _MAX_INT_DIGITS


def _has_long_digit_run(text: str) -> bool:
    """Whether `text` has _MAX_INT_DIGITS ASCII digits in a row (all a JSON integer is made of):
    `_LONG_DIGITS.search` tries a match at every character, 0.25 s on a 15 MB file; this is two
    C passes and a substring search, 15 ms."""
    return _ZERO_RUN in text.encode("utf-8", "surrogatepass").translate(_DIGITS_AS_ZERO)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_int(digits: str) -> int:
    if len(digits) > _MAX_INT_DIGITS:
        raise ValueError(f"integer with {len(digits):,} digits is too large")
    return int(digits)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {excerpt(text)} is out of range")
    return value


def _check_surrogates(value: Any, text: str, start: int, end: int) -> None:
    if not _SURROGATE_ESCAPE.search(text, start, end):
        return  # the common case: no \uD800-\uDFFF escape at all, nothing to walk
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str) and _LONE_SURROGATE.search(item):
            raise ValueError("a string contains an unpaired surrogate escape (\\uD800-\\uDFFF)")


def duplicate_keys_message(keys: list[str]) -> str:
    names = ", ".join(excerpt(key) for key in dict.fromkeys(keys))
    return f"duplicate key {names}: each field may appear only once"


class EntryCollector:
    """Validates entries one by one; good ones are kept, every problem goes to the ErrorSink."""

    def __init__(self, errors: ErrorSink, max_entries: int | None = None) -> None:
        self.entries: list[ParsedEntry] = []
        self.attempted = 0
        self._errors = errors
        self._max_entries = MAX_ENTRIES if max_entries is None else max_entries
        self._first_line_of_id: dict[str, int] = {}

    def refused(self) -> None:
        """Count an entry that was rejected before validation (bad JSON...): the file is not empty."""
        self.attempted += 1

    def room_for(self, count: int) -> bool:
        return self.attempted + count <= self._max_entries

    def too_many_message(self, count: int) -> str:
        return (
            f"too many prompts: {count:,} (the limit is {self._max_entries:,} per file); "
            "split it into several files"
        )

    def add(
        self,
        raw: Mapping[str, Any],
        line: int,
        column: int | None,
        locate: Callable[[str], Position] | None = None,
    ) -> bool:
        """Validate one entry; False once the file holds more entries than allowed (stop reading)."""
        if self.attempted >= self._max_entries:
            self._errors.add(line, column, f"too many prompts: the limit is {self._max_entries:,} per file")
            return False
        self.attempted += 1
        try:
            entry = PromptEntry.model_validate(raw)
        except ValidationError as exc:
            for detail in exc.errors(include_url=False):
                field, message = describe_error(detail)
                at_line, at_column = locate(field) if locate and field else (line, column)
                self._errors.add(at_line, at_column, message)
            return True
        if entry.id is not None:
            if entry.id in self._first_line_of_id:
                first_line = self._first_line_of_id[entry.id]
                message = f"duplicate id {excerpt(entry.id)} (first used on line {first_line})"
                self._errors.add(line, column, message)
                return True
            self._first_line_of_id[entry.id] = line
        self.entries.append(ParsedEntry(line=line, entry=entry))
        return True


def describe_error(detail: ErrorDetails) -> tuple[str | None, str]:
    """(top-level field name, plain-English message) for one pydantic error."""
    loc = detail["loc"]
    field = str(loc[0]) if loc else None
    kind = detail["type"]
    if kind == "extra_forbidden" and field is not None:
        return field, unknown_field_message(field)
    if kind == "missing" and field is not None:
        return field, f"missing required field {field!r}"
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    message = f"{path}: {detail['msg']}" if path else detail["msg"]
    return field, message + _got(kind, detail.get("input"))


def _got(kind: str, value: Any) -> str:
    if kind == "string_too_long" and isinstance(value, str):
        return f" (got {len(value):,} characters)"
    if isinstance(value, str):
        return f" (got {excerpt(value)})"
    if value is None or isinstance(value, bool | int | float):
        return f" (got {json.dumps(value)})"
    return f" (got {json_type_name(value)})"
