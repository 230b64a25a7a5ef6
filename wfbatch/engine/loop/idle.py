"""When `wfbatch run` stops: every job finished, or what is left cannot move — and why."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from wfbatch.core.states import IN_FLIGHT_STATES, JobState
from wfbatch.engine.loop.holds import Holds
from wfbatch.engine.loop.pool import ProviderPool
from wfbatch.store import StoreApi


@dataclass(frozen=True)
class StopReason:
    """Why `run_until_idle` returned."""

    code: str
    """`done` (nothing left to do), `paused` (work left that cannot proceed), `stopped` (asked to)."""
    message: str
    details: dict[str, Any] = field(default_factory=dict)


async def idle_reason(
    store: StoreApi, pool: ProviderPool, holds: Holds, batch_ids: Sequence[str] | None
) -> StopReason | None:
    """With no job of these batches being worked on: done, held (with every reason), or None when
    something will move by itself (a retry's wait, a 429's wait)."""
    counts = await store.counters.counts(batch_ids)
    if not any(counts[state] for state in (JobState.QUEUED, JobState.RETRYING, *IN_FLIGHT_STATES)):
        return StopReason("done", "all jobs finished", {"counts": counts})
    if counts[JobState.RETRYING] or any(counts[state] for state in IN_FLIGHT_STATES):
        return None
    everything = holds.everything()
    if everything is not None:
        return StopReason("paused", f"paused: {everything}", {"counts": counts})
    providers = await store.jobs.queued_providers(batch_ids)
    if any(pool.limiter(name).blocked_for() > 0 for name in providers):
        return None  # a 429 wait: it ends by itself
    if any(holds.window(name) for name in providers) and not any(
        pool.limiter(name).hold() for name in providers
    ):
        return None  # a [schedule] window opens by itself: `run` waits for it as the daemon does
    scheduled = await store.batches.next_not_before(time.time(), batch_ids)
    if scheduled is not None:
        return None  # a batch whose not_before is ahead starts then
    details: dict[str, Any] = {"counts": counts}
    for name in providers:
        limiter = pool.limiter(name)
        if limiter.paused:
            details.setdefault("providers", {})[name] = {"paused": limiter.paused, **limiter.pause_details}
    paused = await store.batches.paused_batch_ids()
    scope = set(batch_ids) if batch_ids is not None else paused
    reasons = holds.reasons(providers, paused & scope)
    if reasons:
        return StopReason("paused", "; ".join(reasons), details)
    return None
