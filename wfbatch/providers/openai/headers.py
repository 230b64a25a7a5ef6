"""How openai's answers spell rate-limit headers (see providers/http/headers.py)."""

from __future__ import annotations

from collections.abc import Mapping

from wfbatch.providers.http.headers import (
    RateLimitSnapshot,
    go_duration,
    header,
    int_header,
    limit_header,
)


def openai_dialect(headers: Mapping[str, str], now: float) -> RateLimitSnapshot:
    """`x-ratelimit-{limit,remaining,reset}-requests`; the reset is a Go duration (`6m0s`)."""
    delay = go_duration(header(headers, "x-ratelimit-reset-requests"))
    return RateLimitSnapshot(
        limit_header(headers, "x-ratelimit-limit-requests"),
        int_header(headers, "x-ratelimit-remaining-requests"),
        None if delay is None else now + delay,
    )
