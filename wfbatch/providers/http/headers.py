"""Back-off and rate-limit headers, read the same way for every provider (providers.md §5.4, §8).

Pure functions over a header mapping (case-insensitive in practice: httpx.Headers); no I/O, no httpx.
Each provider speaks its own rate-limit dialect; a small adapter per dialect turns its headers into
one `RateLimitSnapshot` the engine's limiter understands, so the limiter never learns provider names.
"""

from __future__ import annotations

import email.utils
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# Go's time.Duration.String(): "6m0s", "1.5s", "12ms", "1h2m3.5s", "800us" / "800µs".
_GO_PART = re.compile(r"(\d+(?:\.\d+)?)(h|m(?!s)|s|ms|us|µs|ns)")
_GO_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def header(headers: Mapping[str, str], name: str) -> str | None:
    """`name` (lower case) from httpx.Headers or from a plain dict spelled in any case."""
    value = headers.get(name)
    if value is None:
        for key, candidate in headers.items():
            if key.lower() == name:
                return candidate
    return value


def finite(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def go_duration(text: str | None) -> float | None:
    """Seconds in a Go-style duration (`6m0s`, `12ms`, `1s`); a bare number counts as seconds."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    plain = finite(text)
    if plain is not None:
        return plain if plain >= 0 else None
    position, total = 0, 0.0
    for match in _GO_PART.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        position = match.end()
    return total if position == len(text) and position > 0 else None


def _http_date_delay(text: str, now: float) -> float | None:
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - now)


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """The server's back-off hint in seconds: `retry-after-ms`, else `Retry-After` (seconds or an
    HTTP date), in the order openai-python reads them. None when neither is there or readable."""
    millis = finite(header(headers, "retry-after-ms"))
    if millis is not None and millis >= 0:
        return millis / 1000.0
    raw = header(headers, "retry-after")
    if raw is None or not raw.strip():
        return None
    seconds = finite(raw)
    if seconds is not None:
        return seconds if seconds >= 0 else None
    return _http_date_delay(raw.strip(), now)


def should_retry(headers: Mapping[str, str]) -> bool | None:
    """`x-should-retry`: the server's own verdict on retrying (None when it gives none)."""
    value = (header(headers, "x-should-retry") or "").strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    return None


@dataclass(frozen=True)
class RateLimitSnapshot:
    """What a response says about the request window: its size, what is left, and when it resets
    (absolute Unix seconds). Any field may be unknown."""

    limit: int | None = None
    remaining: int | None = None
    reset_at: float | None = None


RateLimitDialect = Callable[[Mapping[str, str], float], RateLimitSnapshot]
"""(headers, wall-clock now) -> snapshot."""


def int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = finite(header(headers, name))
    return None if value is None else max(0, int(value))


def limit_header(headers: Mapping[str, str], name: str) -> int | None:
    """A window size: at least 1. A hostile `0` (or negative) would make a window that never opens."""
    value = int_header(headers, name)
    return value if value is not None and value >= 1 else None


def x_ratelimit_dialect(headers: Mapping[str, str], now: float) -> RateLimitSnapshot:
    """`X-RateLimit-{Limit,Remaining}` and `X-RateLimit-Reset` as absolute Unix seconds (Wireflow's)."""
    reset = finite(header(headers, "x-ratelimit-reset"))
    return RateLimitSnapshot(
        limit_header(headers, "x-ratelimit-limit"), int_header(headers, "x-ratelimit-remaining"), reset
    )


def no_dialect(headers: Mapping[str, str], now: float) -> RateLimitSnapshot:
    """A provider that sends no rate-limit headers (the local renderer)."""
    return RateLimitSnapshot()
