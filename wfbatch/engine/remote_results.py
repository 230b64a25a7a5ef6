"""A remote batch's results: every line of its output and error files recorded as its job's outcome
through the one-job path's own helpers, and the jobs no line spoke of back to the queue."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace

from wfbatch.core.states import JobState
from wfbatch.engine.runner import JobRunner, JobServices, fail, requeue
from wfbatch.providers.base import LineResult, RemoteBatchApi
from wfbatch.providers.errors import OutOfCredits, Permanent, ProviderError, Transient
from wfbatch.settings import BatchModeSettings
from wfbatch.store import JobRow, OutcomeRecord
from wfbatch.store.remote_batches import RemoteBatchRow, RemoteBatchStore
from wfbatch.store.rows import spec_to_json


class RemoteResults:
    def __init__(
        self,
        services: JobServices,
        runner: JobRunner,
        rows: RemoteBatchStore,
        record: Callable[[JobRow, OutcomeRecord], Awaitable[None]],
        section: Callable[[str], BatchModeSettings],
        emit: Callable[[RemoteBatchRow], None],
    ) -> None:
        self.s = services
        self.runner = runner
        self.rows = rows
        self._record = record
        self._section = section
        self._emit = emit

    async def commit(self, job: JobRow, outcome: OutcomeRecord) -> None:
        """Record one job's outcome; shielded, as on the one-job path: a shutdown arriving now
        cannot leave it half recorded."""
        await asyncio.shield(self._record(job, outcome))

    async def collect(self, row: RemoteBatchRow, api: RemoteBatchApi) -> None:
        """Every line of the output and error files recorded as its job's outcome, then the jobs
        no line spoke of back to the queue. A crash meanwhile reads the files again: the jobs
        already recorded are no longer members and are skipped."""
        if row.status == "failed":
            # The input file was rejected: nothing ran, nothing was charged.
            why = row.message or "the input file was rejected"
            refused = Permanent(f"{row.provider} batch {row.remote_id} failed validation: {why}")
            await self.fail_all(row, refused)
            return
        for file_id in (row.output_file_id, row.error_file_id):
            if not file_id:
                continue
            members = {job.uid: job for job in await self.rows.members(row.id)}
            if not members:
                break
            async for result in api.results(file_id, {uid: job.spec for uid, job in members.items()}):
                job = members.pop(result.custom_id, None)
                if job is not None:
                    await self.line_outcome(row, job, result)
        status = row.status or "ended"
        await self.release_all(row, f"remote batch {row.remote_id} {status} before this request ran")

    async def line_outcome(self, row: RemoteBatchRow, job: JobRow, result: LineResult) -> None:
        s = self.s
        let_go = {"remote_batch": None}
        if result.finished is not None:
            job = await self.runner.settle(job, result.finished)
            if job.state is JobState.CANCELED:
                # Paid all the same (the charge is recorded, the bytes are in cache/): a retry takes
                # it from there without paying again.
                await s.store.record_outcome(job.id, OutcomeRecord(facts=let_go))
                return
            batch = await s.batch(job.batch_id)
            outcome = await self.runner.done(job, batch, result.finished.images[0], result.finished)
        elif result.never_ran:
            await self.requeue(row, job, f"remote batch {row.remote_id} {row.status}: {result.error}")
            return
        elif isinstance(result.error, Permanent):
            outcome = fail(job, result.error, s.clock.wall(), ended=True)
        elif isinstance(result.error, OutOfCredits):
            outcome = requeue(job, result.error.message, refused=True, error=result.error)
        else:
            error = result.error if isinstance(result.error, ProviderError) else Transient(str(result.error))
            outcome = self.runner.retry_or_fail(job, s.pool.limiter(job.provider), error)
        await self.commit(job, replace(outcome, facts={**outcome.facts, **let_go}))

    async def requeue(self, row: RemoteBatchRow, job: JobRow, why: str) -> None:
        """A request the remote batch never ran: not charged, back to the queue with the reason
        (or to direct mode, if the user said so)."""
        outcome = requeue(job, why, refused=True, error=Transient(why))
        fields = dict(outcome.fields)
        section = self._section(row.provider)
        if section.batch_expired_to_direct and row.status == "expired":
            fields["spec"] = spec_to_json(replace(job.spec, mode="direct"))
        outcome = replace(outcome, fields=fields, facts={**outcome.facts, "remote_batch": None})
        await self.commit(job, outcome)

    async def release_all(self, row: RemoteBatchRow, why: str) -> None:
        """Every job still in the batch back to the queue (nothing of theirs ran), the row closed."""
        for job in await self.rows.members(row.id):
            await self.requeue(row, job, why)
        await self.rows.close(row.id, why, self.s.clock.wall())
        closed = await self.rows.get(row.id)
        if closed is not None:
            self._emit(closed)

    async def fail_all(self, row: RemoteBatchRow, error: Permanent) -> None:
        for job in await self.rows.members(row.id):
            outcome = fail(job, error, self.s.clock.wall(), ended=True)
            await self.commit(job, replace(outcome, facts={**outcome.facts, "remote_batch": None}))
        await self.rows.close(row.id, error.message, self.s.clock.wall())
        closed = await self.rows.get(row.id)
        if closed is not None:
            self._emit(closed)
