"""How long the work left will take, from what binds it: each provider's limits (as the limiter
knows them now) and its observed latency, replayed by the forecast's model (the one `plan` uses).

Batches share a provider by priority and weight (engine/loop/fairshare.py), so a batch finishes
when its provider has made its starts and the share of every other runnable batch's meanwhile: its
ETA is the provider's time for that many. A batch (or everything) that cannot move — a pause, a
budget, no credit — has no ETA: "held" says more than a number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from wfbatch.core.states import UNFINISHED_STATES
from wfbatch.daemon.context import DaemonContext
from wfbatch.engine.loop.fairshare import Claim, shares, starts_until_done
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


def _waits(ctx: DaemonContext, batch: BatchRow) -> float:
    """Seconds until the batch's `not_before` (0 once it has come)."""
    if batch.not_before is None:
        return 0.0
    return max(0.0, batch.not_before - ctx.engine.clock.wall())


def claims(
    ctx: DaemonContext, batches: Sequence[BatchRow], counts: Mapping[str, Mapping[str, int]]
) -> dict[str, list[Claim]]:
    """Each provider's runnable batches as fair-share claims: not held, their time come."""
    holds = ctx.engine.holds
    found: dict[str, list[Claim]] = {}
    for batch in batches:
        if holds.everything() or holds.batch(batch) or holds.provider(batch.provider) or _waits(ctx, batch):
            continue
        left = _left(counts.get(batch.id, {}))
        found.setdefault(batch.provider, []).append(Claim(batch.id, left, batch.priority, batch.weight))
    return found


def batch_shares(
    ctx: DaemonContext, batches: Sequence[BatchRow], counts: Mapping[str, Mapping[str, int]]
) -> dict[str, float]:
    """The share of its provider's starts each runnable batch with work left gets now."""
    groups = claims(ctx, batches, counts).values()
    return {key: share for group in groups for key, share in shares(group).items()}


async def batch_etas(
    ctx: DaemonContext, batches: Sequence[BatchRow], counts: Mapping[str, Mapping[str, int]]
) -> dict[str, float | None]:
    """Each batch's ETA in seconds (0 when nothing is left, None when it is held): its provider's
    time for the starts it makes, over every runnable batch, until this one's last job has started
    under the fair share (`starts_until_done`). A batch scheduled for later waits until then, then
    counts its own jobs."""
    etas: dict[str, float | None] = {}
    runnable = claims(ctx, batches, counts)
    totals = {name: sum(claim.jobs for claim in group) for name, group in runnable.items()}
    seconds = {name: await provider_seconds(ctx, name, n) for name, n in totals.items() if n}
    until = {key: n for group in runnable.values() for key, n in starts_until_done(group).items()}
    for batch in batches:
        left = _left(counts.get(batch.id, {}))
        name = batch.provider
        if not left:
            etas[batch.id] = 0.0
        elif batch.id in until:
            # The model is close to linear past its first window: scale the provider's total.
            total = seconds.get(name)
            etas[batch.id] = None if total is None else round(total * until[batch.id] / totals[name], 1)
        elif _waits(ctx, batch) and not ctx.engine.holds.batch(batch):
            alone = await provider_seconds(ctx, name, left)
            etas[batch.id] = None if alone is None else round(_waits(ctx, batch) + alone, 1)
        else:
            etas[batch.id] = None
    return etas


def overall_eta(etas: Mapping[str, float | None]) -> float | None:
    """Until every batch that can move is done: the latest of their ETAs (they share the providers'
    limits, so the last one to finish bounds them all); None when none can move."""
    if not etas:
        return 0.0
    movable = [eta for eta in etas.values() if eta is not None]
    return max(movable) if movable else None
