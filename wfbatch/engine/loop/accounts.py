"""Which of a provider's accounts starts a job: the one whose quota pool can start soonest, among
those not held (a bad key, no credit, a cap) and with a free in-flight place; ties by weight, then
fewest in flight. Work-conserving: a free account never idles while another one's window is full.

A job whose start may have reached the provider stays on the account that has it (`pinned`):
sending it on another account could pay for the same image twice."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from wfbatch.core.states import Execution
from wfbatch.engine.loop.limiter import ProviderLimiter
from wfbatch.engine.loop.pool import ProviderPool
from wfbatch.store import JobRow


def pinned(job: JobRow) -> bool:
    """Whether the job must stay on its account: a start of it may exist there (a maybe-started or
    finished execution, a remote id, a stored result). Only a start that never left, or an
    execution known to have ended, may move."""
    return (
        job.execution in (Execution.MAYBE, Execution.FINISHED)
        or job.remote_id is not None
        or job.result is not None
    )


@dataclass
class Choice:
    account: str
    pool: str
    weight: float
    limiter: ProviderLimiter


def free_places(limiter: ProviderLimiter) -> int:
    """In-flight places left in the pool; until it has answered once, one job at a time: a wrong
    key or a dead endpoint then costs one request, not one per place."""
    free = limiter.limits.max_in_flight - limiter.in_flight
    if not limiter.answered:
        free = min(free, 1 - limiter.in_flight)
    return free


def startable(pool: ProviderPool, name: str) -> list[Choice]:
    """The provider's accounts that may start something now."""
    found = []
    for account in pool.accounts(name):
        if pool.account_hold(name, account.name) is not None:
            continue
        limiter = pool.account_limiter(name, account.name)
        if not limiter.has_capacity() or limiter.blocked_for() > 0:
            continue
        found.append(Choice(account.name, account.pool, account.weight, limiter))
    return found


def total_free(choices: list[Choice]) -> int:
    pools = {choice.pool: choice.limiter for choice in choices}
    return sum(max(0, free_places(limiter)) for limiter in pools.values())


def pick(choices: list[Choice], job: JobRow, own: str, pending: Counter[str]) -> Choice | None:
    """The account this job starts on now (None: it waits). `own`: the job's account (the first
    for one never started); `pending`: starts handed to each pool in this round, still to queue."""
    if pinned(job):
        choices = [choice for choice in choices if choice.account == own]
    usable = [choice for choice in choices if free_places(choice.limiter) > 0]
    if not usable:
        return None

    def rank(choice: Choice) -> tuple[float, float, int]:
        ahead = choice.limiter.waiting_starts + pending[choice.pool]
        return (round(choice.limiter.start_wait_after(ahead), 2), -choice.weight, choice.limiter.in_flight)

    return min(usable, key=rank)
