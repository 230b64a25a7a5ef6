"""Retry delays: exponential backoff with jitter, so a fleet of failed jobs does not retry in step."""

from __future__ import annotations

import random


def retry_delay(attempt: int, initial: float, maximum: float, rng: random.Random | None = None) -> float:
    """Delay before retry number `attempt` (1-based): initial·2^(attempt-1), capped, then jittered into
    [50 %, 100 %] of that ("equal jitter": never retries instantly, never all at once)."""
    base: float = min(maximum, initial * 2.0 ** max(0, attempt - 1))
    jitter = (rng or random.Random()).random()
    return base * (0.5 + 0.5 * jitter)
