"""Canceled (or given up) jobs whose remote execution may still run and charge.

A cancel stops our work at once, but an execution the provider already started goes on (and may be
charged) unless the provider can stop it; so does one a job gave up waiting for. Such a job keeps its
credit reservation, so a budget never counts on money that may be spent, until the provider says the
execution ended: asked here, now and then, at the lowest priority.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence

from wfbatch.engine.loop.budget import Budget
from wfbatch.engine.loop.limiter import ProviderPaused
from wfbatch.engine.loop.pool import ProviderPool
from wfbatch.providers.base import Finished
from wfbatch.providers.errors import Permanent, ProviderError
from wfbatch.providers.registry import traits
from wfbatch.store import AttemptRecord, JobRow, OutcomeRecord, StoreApi

log = logging.getLogger("wfbatch.engine")

SETTLE_BATCH = 20


class CanceledExecutions:
    def __init__(self, store: StoreApi, budget: Budget, pool: ProviderPool) -> None:
        self._store = store
        self._budget = budget
        self._pool = pool

    async def stop(self, job_ids: Sequence[int], tasks: Mapping[int, asyncio.Task[None]]) -> list[int]:
        """Jobs just recorded as canceled: stop their tasks (`tasks`, by job id) at once, then
        settle what each holds by what is known of its execution — a start that never went out
        gives its reservation back, one that may still charge keeps it — and ask the provider to
        stop an execution that exists. Returns the ids of the jobs that were stopped in flight."""
        running = {job_id: tasks.get(job_id) for job_id in job_ids}
        stopping = {job_id: task for job_id, task in running.items() if task is not None and not task.done()}
        for task in stopping.values():
            task.cancel()
        if stopping:
            await asyncio.gather(*stopping.values(), return_exceptions=True)
        for job_id in job_ids:
            job = await self._store.jobs.get_job(job_id)
            if job is None:
                continue
            await self._store.jobs.record_outcome(job_id, OutcomeRecord())
            await self.stop_remotely(job)
        return sorted(stopping)

    async def stop_remotely(self, job: JobRow) -> None:
        """Stop the paid work itself where the provider's API can (a cancel does not promise that
        nothing is charged: the reservation stays until the provider says the execution ended)."""
        if job.handle is None or not traits(job.provider).remote_cancel:
            return
        provider = await self._pool.get(job.provider, job.account)  # the account that has it
        if provider is None:
            return
        try:
            asked = await provider.cancel(job.handle)
        except (ProviderError, ProviderPaused) as error:
            log.warning("job %s: could not cancel execution %s: %s", job.id, job.remote_id, error)
            return
        attempt = AttemptRecord(
            kind="cancel", outcome="requested" if asked else "refused", remote_id=job.remote_id
        )
        await self._store.jobs.record_outcome(job.id, OutcomeRecord(attempt=attempt))

    async def settle(self, busy: set[int], serves: Callable[[JobRow], bool] = lambda job: True) -> int:
        """Ask about each execution of a canceled or failed job that may still charge (skipping
        jobs in `busy`, which a retry is already driving). Finished → its charge is recorded and its
        result kept, so a retry downloads it without paying again; ended → the reservation goes
        back. Returns how many were settled."""
        settled = 0
        given_up = await self._store.jobs.failed_live_executions(SETTLE_BATCH)
        for job in await self._store.jobs.canceled_live_executions(SETTLE_BATCH) + given_up:
            provider = await self._pool.get(job.provider, job.account)  # the account that has it
            if provider is None or job.handle is None or job.id in busy or not serves(job):
                continue  # (not `serves`: its account is another daemon's, which settles it)
            try:
                outcome = await provider.poll(job.handle)
            except Permanent as error:
                attempt = AttemptRecord(
                    kind="poll", outcome="ended", message=error.message, request_id=error.request_id
                )
                await self._store.jobs.record_outcome(job.id, OutcomeRecord(attempt=attempt, ended=True))
                settled += 1
                continue
            except (ProviderError, ProviderPaused) as error:
                log.info("canceled job %s: no word on execution %s: %s", job.id, job.remote_id, error)
                await self._store.jobs.touch_job(job.id)
                continue
            if isinstance(outcome, Finished):
                result = outcome.to_json() if outcome.urls and not outcome.images else None
                await self._budget.settle_finished(job, outcome.credits_used, result)
                settled += 1
            else:
                await self._store.jobs.touch_job(job.id)
        return settled
