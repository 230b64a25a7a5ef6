"""Credit caps: each job's cost is estimated and reserved before its request is sent, reconciled with
the provider's charge when it finishes, released when it fails. A job that would cross a cap is not
started: its batch (budget) or provider (daily credit cap) pauses with the figures, jobs stay queued.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from wfbatch.core.models import JobSpec
from wfbatch.core.states import LIVE_EXECUTIONS
from wfbatch.engine.clock import Clock
from wfbatch.providers.base import Provider
from wfbatch.providers.errors import AuthenticationFailed, ProviderError
from wfbatch.providers.registry import traits
from wfbatch.settings import Settings
from wfbatch.store import BatchRow, JobRow, StoreApi, ledger_day

log = logging.getLogger("wfbatch.budget")


def configured_cost(settings: Settings, provider: str, model: str | None) -> float | None:
    """Credits per image from the config's `costs` (by model, else `default`); None when unknown."""
    costs = settings.provider_limits(provider).costs
    if model is not None and model in costs:
        return costs[model]
    return costs.get("default")


async def ask_estimate(provider: Provider | None, settings: Settings, spec: JobSpec) -> float | None:
    """Credits for one image: the provider's own estimate where it gives one (a free request), else
    the configured `costs`, else None (unknown)."""
    return (await _asked_estimate(provider, settings, spec))[0]


async def _asked_estimate(
    provider: Provider | None, settings: Settings, spec: JobSpec, *, refused_key: bool = False
) -> tuple[float | None, bool]:
    """`ask_estimate`, and whether the answer may be kept: not when the provider's estimate request
    failed (a timeout is no reason to treat the cost as unknown for the rest of the run).
    `refused_key`: a key the provider refuses is raised (`AuthenticationFailed`), not papered over."""
    if provider is not None and traits(spec.provider).estimates_cost:
        try:
            estimate = await provider.estimate(spec)
        except AuthenticationFailed:
            if refused_key:
                raise
            log.warning("%s: no cost estimate (the key was refused); using configured costs", spec.provider)
            return configured_cost(settings, spec.provider, spec.model), False
        except ProviderError as error:
            log.warning("%s: no cost estimate (%s); using the configured costs", spec.provider, error)
            return configured_cost(settings, spec.provider, spec.model), False
        if estimate is not None:
            return estimate, True
    return configured_cost(settings, spec.provider, spec.model), True


def cost_key(spec: JobSpec) -> tuple[str, str | None, str | None]:
    """What a cost is known by: a batch-mode image of a model costs less than a direct one."""
    return spec.provider, spec.model, spec.mode


@dataclass(frozen=True)
class Admission:
    """May the job start? `refusal` says why not; `reserved` is what it holds in the ledger."""

    refusal: str | None = None
    reserved: float | None = None
    account_capped: bool = False
    """The refusal is the account's own daily credit cap: that account is held, not the batch."""


def _fmt(credits: float) -> str:
    return f"{credits:g}"


class Budget:
    def __init__(self, store: StoreApi, settings: Settings, clock: Clock) -> None:
        self.ledger = store.ledger
        self.settings = settings
        self._clock = clock
        # By (provider, model, mode): a batch-mode image of a model costs less than a direct one.
        self._estimates: dict[tuple[str, str | None, str | None], float | None] = {}
        self._estimate_locks: dict[tuple[str, str | None, str | None], asyncio.Lock] = {}
        self.paused_batches: dict[str, str] = {}
        """Batches held back by their budget: id → reason with the figures."""
        self._provider_blocks: dict[str, tuple[str, str]] = {}
        self.reserved_hooks: list[Callable[[BatchRow, str, str], Awaitable[None]]] = []
        """Called with (batch, provider, day) after a reservation: the budget alert looks then."""

    async def estimate(
        self, spec: JobSpec, provider: Provider | None, *, refused_key: bool = False
    ) -> float | None:
        """The provider's own estimate when it has one, else the config's, else what this kind of
        image was last charged. Asked once per (provider, model): concurrent callers wait for the
        one request in flight instead of each sending their own. `refused_key`: raise
        `AuthenticationFailed` when the key is refused (a start would be refused too)."""
        key = cost_key(spec)
        if key in self._estimates:
            return self._estimates[key]
        lock = self._estimate_locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self._estimates:
                return self._estimates[key]
            estimate, settled = await _asked_estimate(provider, self.settings, spec, refused_key=refused_key)
            if settled:
                self._estimates[key] = estimate
            return estimate

    def cost_known(self, spec: JobSpec) -> bool:
        """Whether the cost of an image like `spec` is known (estimated, configured or learned)."""
        return self._estimates.get(cost_key(spec)) is not None

    def capped(self, batch: BatchRow, provider: str) -> bool:
        """Whether a cap counts this batch's spending: its budget, or the provider's daily cap."""
        daily_cap = self.settings.provider_limits(provider).daily_credit_cap
        return batch.budget is not None or daily_cap is not None

    def learn_charge(self, spec: JobSpec, charged: float) -> None:
        """An unknown cost becomes known from the first actual charge: later caps can count it."""
        key = cost_key(spec)
        if self._estimates.get(key) is None:
            self._estimates[key] = charged

    def provider_block(self, provider: str) -> str | None:
        block = self._provider_blocks.get(provider)
        if block is None:
            return None
        reason, day = block
        if day != ledger_day(self._clock.wall()):
            del self._provider_blocks[provider]  # a new day: the daily cap starts afresh
            return None
        return reason

    async def admit(self, job: JobRow, batch: BatchRow, provider: Provider) -> Admission:
        """Reserve the job's estimated cost if every cap allows it; otherwise the reason it waits.

        A job whose execution exists (or may) is resumed, not started: it spends nothing new, so no
        cap holds it (it finishes or fails with a reason), and its reservation stays as it is. Every
        start of a new execution is checked against every cap."""
        if job.execution in LIVE_EXECUTIONS:
            return Admission(reserved=job.reserved)
        if job.reserved is not None:
            await self.ledger.release(job.id)  # left by a start that never went out: not an exposure
        # A refused key ends here, before the start: that account's first answer is its only one.
        estimate = await self.estimate(job.spec, provider, refused_key=True)
        cost = estimate or 0.0  # unknown: nothing to reserve (the engine then starts one at a time)
        day = ledger_day(self._clock.wall())
        limits = self.settings.provider_limits(job.provider)
        # Check and reserve are one store transaction: parallel jobs cannot both slip under a cap.
        reached = await self.ledger.reserve_under_caps(
            job.id,
            job.batch_id,
            job.provider,
            cost,
            budget=batch.budget,
            daily_cap=limits.daily_credit_cap,
            day=day,
            account=job.account,
            account_cap=limits.account_credit_cap(job.account),
        )
        if reached is None:
            if cost:
                for hook in self.reserved_hooks:
                    try:
                        await hook(batch, job.provider, day)
                    except Exception:  # an alert that cannot be queued must not stop the job it saw
                        log.exception("budget alert for batch %s: not queued", batch.id)
            return Admission(reserved=estimate) if estimate else Admission()
        if reached.cap == "budget":
            reason = (
                f"budget reached: {_fmt(reached.exposure)} of {_fmt(reached.limit)} credits spent or"
                f" reserved; the next job needs {_fmt(cost)}"
            )
            self.paused_batches[batch.id] = reason
        elif reached.cap == "account_daily" and len(limits.account_list()) > 1:
            # Only this account stops for today: the job is picked again, for another account.
            reason = (
                f"account daily credit cap reached: {_fmt(reached.exposure)} of {_fmt(reached.limit)}"
                f" credits today; the next job needs {_fmt(cost)}"
            )
            return Admission(refusal=reason, account_capped=True)
        else:  # the provider's cap, or the cap of its only account: the provider waits for tomorrow
            reason = (
                f"daily credit cap reached: {_fmt(reached.exposure)} of {_fmt(reached.limit)} credits"
                f" today; the next job needs {_fmt(cost)}"
            )
            self._provider_blocks[job.provider] = (reason, day)
        return Admission(refusal=reason)

    async def settle_finished(
        self, job: JobRow, charged: float | None, result: dict[str, Any] | None
    ) -> float:
        """The execution finished with an image: release the reservation and record the charge (the
        estimate when the provider does not say, or says something no charge can be) with the
        result, in one transaction. Returns the credits recorded for the job."""
        if charged is not None and not (math.isfinite(charged) and charged >= 0):
            log.warning(
                "%s: job %s reported a charge of %r, which no charge can be; counting the estimate",
                job.provider, job.id, charged,
            )
            charged = None
        if charged is not None:
            self.learn_charge(job.spec, charged)
        recorded = await self.ledger.settle_finished(job.id, charged, result)
        return (job.credits or 0.0) if recorded is None else recorded

    async def release(self, job_id: int) -> None:
        await self.ledger.release(job_id)

    async def release_leaked(self, reserved_before: float | None = None) -> int:
        leaked = await self.ledger.leaked_reservations(reserved_before)
        for job_id in leaked:
            await self.ledger.release(job_id)
        return len(leaked)

    def set_budget(self, batch_id: str) -> None:
        """The batch's budget changed: let it try again."""
        self.paused_batches.pop(batch_id, None)
