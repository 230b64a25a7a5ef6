"""The line-based formats: `.txt` (one prompt a line) and `.jsonl` (one JSON object a line)."""

from __future__ import annotations

from wfbatch.core.models import PromptEntry
from wfbatch.core.parsing.entries import (
    EntryCollector,
    JsonReader,
    duplicate_keys_message,
    json_type_name,
)
from wfbatch.core.parsing.errors import ErrorSink, excerpt


def _max_length(field: str) -> int:
    for constraint in PromptEntry.model_fields[field].metadata:
        limit = getattr(constraint, "max_length", None)
        if isinstance(limit, int):
            return limit
    raise LookupError(f"PromptEntry.{field} has no max_length")


_MAX_PROMPT_CHARS = _max_length("prompt")


def parse_txt(text: str, errors: ErrorSink, entries: EntryCollector) -> None:
    """Blank lines and lines starting with '#' are skipped; each other line, trimmed, is a prompt."""
    for number, line in enumerate(text.split("\n"), start=1):
        prompt = line.strip()
        if not prompt or prompt.startswith("#"):
            continue
        if len(prompt) > _MAX_PROMPT_CHARS:
            # Checked here rather than by pydantic so the message gives the length, not the text.
            errors.add(
                number,
                None,
                f"prompt is too long: {len(prompt):,} characters (the limit is {_MAX_PROMPT_CHARS:,}); "
                f"it starts {excerpt(prompt)}",
            )
            entries.refused()
            continue
        if not entries.add({"prompt": prompt}, number, None):
            return


def parse_jsonl(text: str, errors: ErrorSink, entries: EntryCollector) -> None:
    """Blank lines are skipped; every other line must be one JSON object of PromptEntry fields."""
    reader = JsonReader()
    reader.screen(text)
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.lstrip()
        if not stripped:
            continue
        column = len(line) - len(stripped) + 1
        try:
            value = reader.loads(line)
        except ValueError as exc:  # JSONDecodeError included
            _report_bad_json(exc, number, column, errors)
            entries.refused()
            continue
        except RecursionError:
            errors.add(number, column, "invalid JSON: nested too deeply")
            entries.refused()
            continue
        if not isinstance(value, dict):
            message = f'expected a JSON object like {{"prompt": ...}}, got {json_type_name(value)}'
            errors.add(number, column, message)
            entries.refused()
            continue
        if reader.duplicate_keys:
            errors.add(number, column, duplicate_keys_message(reader.duplicate_keys))
        if not entries.add(value, number, column):
            return


def _report_bad_json(exc: ValueError, line: int, column: int, errors: ErrorSink) -> None:
    lineno = getattr(exc, "lineno", None)
    colno = getattr(exc, "colno", None)
    message = getattr(exc, "msg", None) or str(exc)
    if lineno == 1 and isinstance(colno, int):
        errors.add(line, colno, f"invalid JSON: {message}")
    else:
        errors.add(line, column, f"invalid JSON: {message}")
