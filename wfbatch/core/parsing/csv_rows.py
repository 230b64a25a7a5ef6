"""The `.csv` format: a header row naming PromptEntry fields (a `prompt` column required), one entry a row.

Cells are trimmed and an empty cell means "not given". `tags` and `images` (reference pictures) are
';'- or ','-separated lists, `params` a JSON object; pydantic turns number text into ints. Lines are
physical lines of the file, so a row whose quoted cell spans lines is reported where it starts, and
errors about one cell point at that cell.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from wfbatch.core.parsing.entries import (
    FIELD_NAMES,
    EntryCollector,
    JsonReader,
    Position,
    did_you_mean,
    duplicate_keys_message,
    json_type_name,
)
from wfbatch.core.parsing.errors import ErrorSink, excerpt
from wfbatch.core.words import plural

_DELIMITERS = (",", ";", "\t")
_QUOTE = '"'
_EXTRA = "fields."


@dataclass(frozen=True)
class _Record:
    """One CSV row and the physical lines it spans (1-based, inclusive)."""

    first_line: int
    last_line: int
    cells: list[str]


class _Source:
    """The file's lines, to turn a cell index back into a line and column (only done for errors)."""

    def __init__(self, text: str, delimiter: str) -> None:
        self._text = text
        self.delimiter = delimiter

    @functools.cached_property
    def _lines(self) -> list[str]:
        return self._text.split("\n")

    def cell_position(self, record: _Record, index: int) -> Position:
        raw = "\n".join(self._lines[record.first_line - 1 : record.last_line])
        starts = _field_starts(raw, self.delimiter)
        offset = starts[min(index, len(starts) - 1)]
        line = record.first_line + raw.count("\n", 0, offset)
        column = offset - (raw.rfind("\n", 0, offset) + 1) + 1
        return line, column


def parse_csv(
    text: str, errors: ErrorSink, entries: EntryCollector, extra_columns: frozenset[str] = frozenset()
) -> None:
    delimiter = _guess_delimiter(text)
    source = _Source(text, delimiter)
    records = _records(text, delimiter, errors)
    header = next(records, None)
    if header is None:
        return
    columns = _read_header(header, source, errors, extra_columns)
    if columns is None:
        return
    reader = JsonReader()
    for record in records:
        raw = _row_fields(record, columns, source, reader, errors)

        def locate(field: str, record: _Record = record) -> Position:
            if field in columns:
                return source.cell_position(record, columns.index(field))
            return record.first_line, None

        if not entries.add(raw, record.first_line, None, locate):
            return


def _guess_delimiter(text: str) -> str:
    """',' unless the header line plainly uses ';' or tabs (spreadsheet exports in some locales)."""
    lines = text.split("\n", 50)[:50]
    header_line = next((line for line in lines if line.strip()), "")
    counts = {delimiter: header_line.count(delimiter) for delimiter in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda delimiter: counts[delimiter])
    return best if counts[best] > 0 else ","


def _records(text: str, delimiter: str, errors: ErrorSink) -> Iterator[_Record]:
    """Non-blank rows with their line span; rows the csv module cannot read become errors."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    last_line = text.count("\n") + (0 if text.endswith("\n") else 1)
    while True:
        first_line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            errors.add(first_line, None, _csv_error_message(exc))
            if reader.line_num < first_line:  # no progress: nothing more can be read
                return
            continue
        if reader.line_num >= last_line and _unclosed_quote(text, first_line, delimiter):
            errors.add(first_line, None, 'a quoted cell opened on this line is never closed (a missing ")')
            return
        if any(cell.strip() for cell in cells):
            yield _Record(first_line, reader.line_num, cells)


def _unclosed_quote(text: str, first_line: int, delimiter: str) -> bool:
    """The lenient reader takes a quote that is never closed as a cell running to the end of the
    file, swallowing every row after it; the strict reader says so. Only the row that reaches
    the end of the file is checked again, so this costs one row's parse."""
    rest = "\n".join(text.split("\n")[first_line - 1:])
    try:
        next(csv.reader(io.StringIO(rest, newline=""), delimiter=delimiter, strict=True), None)
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _csv_error_message(exc: csv.Error) -> str:
    if "field larger than field limit" in str(exc):
        # The csv module's own cap (131,072 by default); raising it is process-wide, and no valid cell
        # comes near it: a prompt is at most 32,000 characters.
        return f"a cell is longer than {csv.field_size_limit():,} characters"
    return f"unreadable CSV row: {exc}"


def _read_header(
    header: _Record, source: _Source, errors: ErrorSink, extra_columns: frozenset[str]
) -> list[str | None] | None:
    """Field name per column (None: ignored column, `fields.<name>`: an extra column kept for the
    name template); None if the header is unusable."""
    columns: list[str | None] = []
    problems: list[tuple[int, int | None, str, bool]] = []  # line, column, message, looks like a typo
    for index, cell in enumerate(header.cells):
        name = cell.strip().lower()
        if name in FIELD_NAMES and name not in columns:
            columns.append(name)
            continue
        if cell.strip() in extra_columns and _EXTRA + cell.strip() not in columns:
            columns.append(_EXTRA + cell.strip())
            continue
        columns.append(None)
        if name:
            line, column = source.cell_position(header, index)
            if name in FIELD_NAMES:
                problems.append((line, column, f"duplicate column {name!r}", True))
            else:
                suggestion = did_you_mean(name, FIELD_NAMES)
                message = f"unknown column {excerpt(cell.strip())}{suggestion}"
                problems.append((line, column, message, bool(suggestion)))
    has_prompt = "prompt" in columns
    for line, column, message, typo in problems:
        # Without a prompt column the first row is probably data, not a header: say that, once.
        if has_prompt or typo:
            errors.add(line, column, message)
    if not has_prompt:
        found = ", ".join(excerpt(cell.strip()) for cell in header.cells[:10])
        errors.add(
            header.first_line, None, f"the first row must be a header with a 'prompt' column (found {found})"
        )
        return None
    return columns


def _row_fields(
    record: _Record,
    columns: list[str | None],
    source: _Source,
    reader: JsonReader,
    errors: ErrorSink,
) -> dict[str, Any]:
    """The given (non-empty) cells of one row as PromptEntry fields. Unusable cells are reported and
    left out: the rest of the row is still validated, so one pass shows every problem."""
    raw: dict[str, Any] = {}
    for index, cell in enumerate(record.cells):
        value = cell.strip()
        if not value:
            continue
        if index >= len(columns):
            line, column = source.cell_position(record, index)
            errors.add(
                line,
                column,
                f"row has {plural(len(record.cells), 'cell')} but the header has "
                f"{plural(len(columns), 'column')} (quote cells that contain {_delimiter_name(source)})",
            )
            break
        name = columns[index]
        if name is None:
            continue  # unknown or duplicate column: reported once, at the header
        if name.startswith(_EXTRA):
            raw.setdefault("fields", {})[name.removeprefix(_EXTRA)] = value
        elif name in ("tags", "images"):
            raw[name] = _split_tags(value)
        elif name == "params":
            params = _read_params(value, reader)
            if isinstance(params, str):
                line, column = source.cell_position(record, index)
                errors.add(line, column, params)
            else:
                raw[name] = params
        else:
            raw[name] = value
    return raw


def _delimiter_name(source: _Source) -> str:
    return {",": "commas", ";": "semicolons", "\t": "tabs"}[source.delimiter]


def _split_tags(value: str) -> list[str]:
    separator = ";" if ";" in value else ","
    return [tag.strip() for tag in value.split(separator) if tag.strip()]


def _read_params(value: str, reader: JsonReader) -> dict[str, Any] | str:
    """The params cell as a dict, or an error message."""
    try:
        params = reader.loads(value)
    except ValueError as exc:
        return f"params: not valid JSON: {getattr(exc, 'msg', None) or exc}"
    except RecursionError:
        return "params: not valid JSON: nested too deeply"
    if not isinstance(params, dict):
        return f'params: expected a JSON object like {{"steps": 30}}, got {json_type_name(params)}'
    if reader.duplicate_keys:
        return f"params: {duplicate_keys_message(reader.duplicate_keys)}"
    return params


def _field_starts(record: str, delimiter: str) -> list[int]:
    """Offset of each field's first character in one raw record, under the csv module's default
    quoting rules: a quote opens only at the start of a field, and "" inside quotes is a quote."""
    starts = [0]
    in_quotes = False
    at_field_start = True
    index = 0
    while index < len(record):
        char = record[index]
        if in_quotes:
            if char == _QUOTE:
                if record.startswith(_QUOTE, index + 1):
                    index += 2
                    continue
                in_quotes = False
        elif char == _QUOTE and at_field_start:
            in_quotes = True
        elif char == delimiter:
            starts.append(index + 1)
            at_field_start = True
            index += 1
            continue
        elif char == "\n":
            break
        at_field_start = False
        index += 1
    return starts
