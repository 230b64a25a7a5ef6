"""Sliding-window counters: at most `limit` hits in any span of `span` seconds."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class WindowVerdict:
    allowed: bool
    limit: int | None
    remaining: int | None
    reset_at: float
    """Absolute time at which one more slot frees up (now, if one is free)."""
    retry_after: float
    """Seconds until a request would be allowed (0 when allowed)."""

    def headers(self) -> dict[str, str]:
        """Wireflow's rate-limit headers; `X-RateLimit-Reset` is absolute Unix seconds (rounded up)."""
        if self.limit is None:
            return {}
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(self.reset_at)),
        }


class SlidingWindow:
    """Remembers the time of each admitted hit; `limit=None` means unlimited."""

    def __init__(self, limit: int | None, span: float) -> None:
        self.limit = limit
        self.span = span
        self._hits: deque[float] = deque()

    def _trim(self, now: float) -> None:
        while self._hits and self._hits[0] <= now - self.span:
            self._hits.popleft()

    def peek(self, now: float, need: int = 1) -> WindowVerdict:
        """What `need` hits at `now` would get, without recording them. More than `limit` never fits:
        the verdict is refused with retry_after = inf."""
        self._trim(now)
        if self.limit is None:
            return WindowVerdict(True, None, None, now, 0.0)
        count = len(self._hits)
        if count + need <= self.limit:
            reset_at = self._hits[0] + self.span if self._hits else now
            return WindowVerdict(True, self.limit, self.limit - count, reset_at, 0.0)
        if need > self.limit:
            return WindowVerdict(False, self.limit, max(0, self.limit - count), math.inf, math.inf)
        # The newest of the hits that must expire before `need` more fit in the window.
        frees_at = self._hits[count + need - 1 - self.limit] + self.span
        return WindowVerdict(
            False, self.limit, max(0, self.limit - count), frees_at, max(0.0, frees_at - now)
        )

    def clear_at(self, now: float) -> float:
        """When the window is back to its initial state (every hit expired)."""
        self._trim(now)
        return self._hits[-1] + self.span if self._hits else now

    def hit(self, now: float, count: int = 1) -> WindowVerdict:
        """Record `count` hits at `now` (the caller checked `peek` first); returns the state after."""
        self._trim(now)
        self._hits.extend([now] * count)
        if self.limit is None:
            return WindowVerdict(True, None, None, now, 0.0)
        remaining = max(0, self.limit - len(self._hits))
        return WindowVerdict(True, self.limit, remaining, self._hits[0] + self.span, 0.0)


class RetryAfterBook:
    """The Retry-After windows a simulator announced: a request arriving inside one is an early
    retry (a client that did not wait as told). Not thread-safe: the caller holds its lock."""

    def __init__(self) -> None:
        self.announced_until = -math.inf
        self.early_retries = 0

    def arrive(self, now: float) -> None:
        if now < self.announced_until:
            self.early_retries += 1

    def announce(self, until: float) -> None:
        self.announced_until = max(self.announced_until, until)
