"""Which runnable batch starts the next job on a provider.

Strict by batch priority (a higher one goes first), then shared by weight among the batches of the
same priority: stride scheduling. Each start advances its batch's *pass* by 1/weight and the batch
with the lowest pass goes next, so over any stretch where two batches are both runnable their
starts stand in the ratio of their weights. A batch that (re)joins starts at the lowest pass of its
priority's batches already there: time away is neither a debt nor a credit, so a 10-image batch
dropped after a 5,000-image one gets every other start at once instead of waiting out the backlog.

This chooses between batches only; `accounts` chooses the account a chosen job starts on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from wfbatch.store import BatchRow


@dataclass
class Round:
    """One dispatch round's turns on one provider. `next()` names the batch whose job goes next;
    `started()` charges it for a start; `exhausted()` drops a batch with nothing more to start."""

    passes: dict[str, float]
    batches: dict[str, BatchRow]
    order: dict[str, int]
    left: set[str] = field(default_factory=set)

    def next(self) -> BatchRow | None:
        if not self.left:
            return None
        chosen = min(self.left, key=lambda b: (-self.batches[b].priority, self.passes[b], self.order[b]))
        return self.batches[chosen]

    def started(self, batch_id: str) -> None:
        self.passes[batch_id] += 1.0 / max(self.batches[batch_id].weight, 1e-6)

    def exhausted(self, batch_id: str) -> None:
        self.left.discard(batch_id)


class FairShare:
    """The passes of each provider's batches, kept between rounds (in memory: after a restart every
    batch starts level, which is fair too)."""

    def __init__(self) -> None:
        self._passes: dict[str, dict[str, float]] = {}

    def round(self, provider: str, batches: Sequence[BatchRow]) -> Round:
        """The turns among `batches` (the provider's runnable ones, oldest first)."""
        passes = self._passes.setdefault(provider, {})
        floors: dict[int, float] = {}
        for batch in batches:
            if batch.id in passes:
                floors[batch.priority] = min(floors.get(batch.priority, passes[batch.id]), passes[batch.id])
        for batch in batches:
            floor = floors.get(batch.priority, 0.0)
            passes[batch.id] = max(passes.get(batch.id, floor), floor)
        # A batch away (finished, paused, all its jobs in flight) keeps its pass while it is ahead;
        # once every priority's floor has passed it, coming back would give it the floor anyway.
        lowest = min(floors.values(), default=0.0)
        present = {batch.id for batch in batches}
        for gone in [b for b, value in passes.items() if b not in present and value <= lowest]:
            del passes[gone]
        return Round(
            passes=passes,
            batches={batch.id: batch for batch in batches},
            order={batch.id: index for index, batch in enumerate(batches)},
            left=set(present),
        )

    def passes(self, provider: str) -> dict[str, float]:
        """A copy of the provider's passes (for tests and status)."""
        return dict(self._passes.get(provider, {}))


@dataclass(frozen=True)
class Claim:
    """A batch's claim on a provider for forecasts: its jobs left, its priority and weight."""

    key: str
    jobs: int
    priority: int = 0
    weight: float = 1.0


def starts_until_done(claims: Sequence[Claim]) -> dict[str, int]:
    """For batches sharing one provider from now on (no newcomers): how many starts the provider
    makes, over all of them, until each one's last job has started. Every batch of a higher priority
    goes first; one of the same priority has made `jobs * its weight / this weight` starts by then
    (or all of its own, if fewer); lower priorities none. The provider's time for that many starts
    is the batch's ETA under the fair share, not under the whole quota."""
    result: dict[str, int] = {}
    for claim in claims:
        if claim.jobs <= 0:
            result[claim.key] = 0
            continue
        total = 0.0
        for other in claims:
            if other.priority > claim.priority:
                total += other.jobs
            elif other.priority == claim.priority:
                total += min(other.jobs, claim.jobs * other.weight / max(claim.weight, 1e-6))
        result[claim.key] = math.ceil(total - 1e-9)  # a start begun is a start: round up
    return result


def shares(claims: Sequence[Claim]) -> dict[str, float]:
    """The share of the provider's starts each claim with jobs gets now: its weight among the
    claims of the highest priority there is; 0 behind a higher one."""
    waiting = [claim for claim in claims if claim.jobs > 0]
    if not waiting:
        return {}
    top = max(claim.priority for claim in waiting)
    weights = sum(claim.weight for claim in waiting if claim.priority == top)
    return {claim.key: (claim.weight / weights if claim.priority == top else 0.0) for claim in waiting}
