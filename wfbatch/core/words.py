"""Counted nouns and figures as people write them: `1 entry`, `2 entries`, `0.21` (never
`0.21000000000000002`)."""

from __future__ import annotations

_IRREGULAR = {"entry": "entries", "batch": "batches", "is": "are", "was": "were"}


def plural(count: int, noun: str) -> str:
    """`1 job`, `2 jobs`, `1,200 entries`."""
    return f"{count:,} {noun if count == 1 else _IRREGULAR.get(noun, noun + 's')}"


def figure(value: float | None) -> str:
    """A float as a person reads it: sums of prices carry binary noise (0.1 + 0.11 =
    0.21000000000000002), so round to 6 significant digits before `g` drops the zeros. None
    (unknown) reads as `unknown`."""
    return "unknown" if value is None else f"{value:.6g}"
