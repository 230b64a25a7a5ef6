"""How long the work left will take, from what binds it: each provider's limits (as the limiter
knows them now) and its observed latency, replayed by the forecast's model (the one `plan` uses).

Jobs go out oldest batch first, so a batch finishes when its provider has worked through it and
every older batch's jobs: its ETA is the provider's time for that many. A batch (or everything)
that cannot move — a pause, a budget, no credit — has no ETA: "held" says more than a number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from wfbatch.core.states import UNFINISHED_STATES
from wfbatch.daemon.context import DaemonContext
from wfbatch.engine.planning.forecast import estimate_seconds
from wfbatch.engine.planning.plan import latency_of, schedule_model
from wfbatch.store import BatchRow


def _left(counts: Mapping[str, int]) -> int:
    return sum(counts.get(state, 0) for state in UNFINISHED_STATES)


async def provider_seconds(ctx: DaemonContext, name: str, jobs: int) -> float | None:
    """Seconds for `name` to finish `jobs` more jobs under its current limits; None when the model
    sees no end (a limit of zero: JSON has no infinity, and "never" is not an ETA)."""
    limiter = ctx.engine.pool.limiter(name)
    latency, _ = await latency_of(ctx.store, ctx.settings, name)
    if len(ctx.engine.pool.accounts(name)) > 1:
        # Several accounts: the sum of their pools' configured limits (the provider's own limiter
        # only holds its pauses, and learns nothing).
        model = schedule_model(ctx.settings, name, latency)
    else:
        model = schedule_model(
            ctx.settings, name, latency,
            requests_per_minute=limiter.requests.limit, executions_per_minute=limiter.executions.limit,
        )
    seconds = estimate_seconds(jobs, model)
    return seconds if math.isfinite(seconds) else None


async def batch_etas(
    ctx: DaemonContext, batches: Sequence[BatchRow], counts: Mapping[str, Mapping[str, int]]
) -> dict[str, float | None]:
    """Each batch's ETA in seconds (0 when nothing is left, None when it is held)."""
    holds = ctx.engine.holds
    ahead: dict[str, int] = {}
    etas: dict[str, float | None] = {}
    queue = sorted(batches, key=lambda b: (b.created_at, b.id))  # the dispatch order, oldest first
    held = {
        b.id for b in queue if holds.everything() or holds.batch(b) or holds.provider(b.provider)
    }
    totals = {b.provider: 0 for b in queue}
    for batch in queue:
        if batch.id not in held:  # a held batch's jobs wait: they are ahead of nobody
            totals[batch.provider] += _left(counts.get(batch.id, {}))
    seconds = {name: await provider_seconds(ctx, name, n) for name, n in totals.items() if n}
    for batch in queue:
        left = _left(counts.get(batch.id, {}))
        name = batch.provider
        if not left:
            etas[batch.id] = 0.0
        elif batch.id in held:
            etas[batch.id] = None
        else:
            ahead[name] = ahead.get(name, 0) + left
            # The model is close to linear past its first window: scale the provider's total.
            total = seconds[name]
            etas[batch.id] = None if total is None else round(total * ahead[name] / totals[name], 1)
    return etas


def overall_eta(etas: Mapping[str, float | None]) -> float | None:
    """Until every batch that can move is done: the latest of their ETAs (they share the providers'
    limits, so the last one to finish bounds them all); None when none can move."""
    if not etas:
        return 0.0
    movable = [eta for eta in etas.values() if eta is not None]
    return max(movable) if movable else None
