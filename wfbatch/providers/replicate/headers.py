"""How replicate's answers spell rate-limit headers (see providers/http/headers.py)."""

from __future__ import annotations

from collections.abc import Mapping

from wfbatch.providers.http.headers import (
    RateLimitSnapshot,
    finite,
    header,
    int_header,
    limit_header,
)


def replicate_dialect(headers: Mapping[str, str], now: float) -> RateLimitSnapshot:
    """`ratelimit-remaining` and `ratelimit-reset` (seconds from now)."""
    delay = finite(header(headers, "ratelimit-reset"))
    return RateLimitSnapshot(
        limit_header(headers, "ratelimit-limit"),
        int_header(headers, "ratelimit-remaining"),
        None if delay is None or delay < 0 else now + delay,
    )
