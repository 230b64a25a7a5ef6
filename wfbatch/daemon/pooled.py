"""A provider's limiter figures when it has several accounts: the sum of its quota pools.

With accounts configured every request and start goes through an account's pool limiter, so the
provider's own limiter stays at zero; shown as is, `status` and the TUI header said `0/10 starts`
and `idle` while three accounts were busy. The provider's line is the sum of its pools instead,
counting each pool once (accounts naming one pool share its limiter) and each key's request window
once (the workflows of one key share it), as `plan` sums the limits.
"""

from __future__ import annotations

from typing import Any

from wfbatch.engine.loop.limiter import ProviderLimiter


def _total(values: list[int | None]) -> int | None:
    """A limit unknown in any pool leaves the sum unknown."""
    return None if any(value is None for value in values) else sum(v for v in values if v is not None)


def pooled_snapshot(own: dict[str, Any], limiters: list[ProviderLimiter]) -> dict[str, Any]:
    """`own` (the provider limiter's snapshot as JSON) with the pools' windows and in-flight places
    summed over `limiters` (its accounts', duplicates allowed); pauses and the day stay its own."""
    pools = list({id(limiter): limiter for limiter in limiters}.values())
    if len(pools) < 2:
        return own
    snapshots = [pool.snapshot() for pool in pools]
    requests = list({id(p.requests): s for p, s in zip(pools, snapshots, strict=True)}.values())
    starts = list({id(p.executions): s for p, s in zip(pools, snapshots, strict=True)}.values())
    # The provider is blocked only while every pool is; then it waits for the first to free.
    blocked = min(snapshots, key=lambda s: s.blocked_for)
    soonest = min(snapshots, key=lambda s: s.next_start_in)
    return {
        **own,
        "requests_in_window": sum(s.requests_in_window for s in requests),
        "requests_per_minute": _total([s.requests_per_minute for s in requests]),
        "executions_in_window": sum(s.executions_in_window for s in starts),
        "executions_per_minute": _total([s.executions_per_minute for s in starts]),
        "in_flight": sum(s.in_flight for s in snapshots),
        "max_in_flight": sum(s.max_in_flight for s in snapshots),
        "blocked_for": blocked.blocked_for,
        "block_reason": blocked.block_reason,
        "requests_sent": own["requests_sent"] + sum(s.requests_sent for s in snapshots),
        "rate_limited": own["rate_limited"] + sum(s.rate_limited for s in snapshots),
        "next_start_in": soonest.next_start_in,
        "next_start_why": soonest.next_start_why,
    }
