"""Small helpers that build the SQLite backend's statements and parameters."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from wfbatch.core.states import ErrorClass, JobState, ReviewStatus


def within(column: str, values: Sequence[str] | None, *, negate: bool = False) -> tuple[str, list[Any]]:
    """` AND column [NOT] IN (?, ...)` and its parameters; nothing when `values` is None."""
    if values is None:
        return "", []
    marks = ",".join("?" * len(values))
    return f" AND {column} {'NOT ' if negate else ''}IN ({marks})", list(values)


def json_or_null(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def json_list(items: list[str], seen: dict[tuple[str, ...], str]) -> str:
    key = tuple(items)
    text = seen.get(key)
    if text is None:
        text = seen[key] = json.dumps(items, ensure_ascii=False)
    return text


def sql_value(value: Any) -> Any:
    if isinstance(value, JobState | ReviewStatus | ErrorClass):
        return value.value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value


def count_if(condition: str) -> str:
    """How many rows meet `condition`, in SQL both databases read (PostgreSQL sums no booleans)."""
    return f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)"
