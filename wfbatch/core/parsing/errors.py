"""What the prompt-file parser reports when a file is refused.

A file is accepted whole or not at all, so every problem found in it is collected first and raised
together as one `PromptFileError`; its `report()` is what the user reads in `rejected/NAME.error.txt`.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_ERRORS = 1000
EXCERPT_CHARS = 60


@dataclass(frozen=True)
class LineError:
    """One problem in a prompt file.

    `line` is 1-based, or 0 when the problem is the whole file (empty, too large, wrong encoding).
    `column` is 1-based (characters, not bytes) where known.
    """

    line: int
    column: int | None
    message: str

    def location(self, source_name: str) -> str:
        if self.line <= 0:
            return source_name
        if self.column is None:
            return f"{source_name}:{self.line}"
        return f"{source_name}:{self.line}:{self.column}"


class PromptFileError(Exception):
    """A prompt file was refused; `errors` names every bad line (capped at MAX_ERRORS + a summary)."""

    def __init__(self, source_name: str, errors: list[LineError]) -> None:
        # Both go to Exception.args so the error survives pickling (e.g. across a process pool).
        super().__init__(source_name, errors)
        self.source_name = source_name
        self.errors = errors

    def report(self) -> str:
        """One line per error, "NAME:LINE:COL: message" (LINE/COL left out when not known)."""
        lines = [f"{error.location(self.source_name)}: {_one_line(error.message)}" for error in self.errors]
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        count = len(self.errors)
        if count == 0:
            return f"{self.source_name}: rejected"
        first = self.errors[0]
        more = f" (and {count - 1} more)" if count > 1 else ""
        return f"{first.location(self.source_name)}: {_one_line(first.message)}{more}"


class ErrorSink:
    """Collects the errors of one file, keeping the first `limit` and counting the rest."""

    def __init__(self, limit: int = MAX_ERRORS) -> None:
        self._limit = limit
        self._kept: list[LineError] = []
        self._dropped = 0

    def add(self, line: int, column: int | None, message: str) -> None:
        if len(self._kept) < self._limit:
            self._kept.append(LineError(line, column, message))
        else:
            self._dropped += 1

    def __bool__(self) -> bool:
        return bool(self._kept)

    def raise_if_any(self, source_name: str) -> None:
        if not self._kept:
            return
        # Stable sort: errors found in different passes (e.g. spec keys, then entries) read top to bottom.
        errors = sorted(self._kept, key=lambda error: (error.line, error.column or 0))
        if self._dropped:
            errors.append(LineError(0, None, f"... and {self._dropped:,} more errors not shown"))
        raise PromptFileError(source_name, errors)


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """A short quoted sample of user text: a 10 MB line must not end up in the error report."""
    if len(text) > limit:
        return repr(text[: limit - 1] + "…")
    return repr(text)


def _one_line(message: str) -> str:
    return message.replace("\r", "\\r").replace("\n", "\\n")
