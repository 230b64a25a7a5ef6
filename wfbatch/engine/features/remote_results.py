"""A remote batch's results: every line of its output and error files recorded as its job's outcome
through the one-job path's own helpers, and the jobs no line spoke of back to the queue.

Money: a line answered 2xx is paid, image or not — its charge is booked before its job moves on, and
it is never sent again (a job whose line was paid is completed from its stored result). A line that
was answered with an error, or never ran, was not charged: its job's next line is a new request,
reserved under the caps like any start."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace

from wfbatch.core.states import LIVE_EXECUTIONS, Execution, JobState
from wfbatch.engine.loop.runner import JobRunner, JobServices, fail, requeue
from wfbatch.outputs import ImageDecodeError
from wfbatch.providers.base import Finished, Image, LineResult, RemoteBatchApi
from wfbatch.providers.errors import OutOfCredits, Permanent, ProviderError, Transient
from wfbatch.settings import BatchModeSettings
from wfbatch.store import BatchRow, JobRow, OutcomeRecord, RemoteBatchesApi, RemoteBatchRow, spec_to_json


class RemoteResults:
    def __init__(
        self,
        services: JobServices,
        runner: JobRunner,
        rows: RemoteBatchesApi,
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
        no line spoke of back to the queue — unless the provider made more lines than could be
        read back (see `_unread`). A crash meanwhile reads the files again: the jobs already
        recorded are no longer members and are skipped."""
        if row.status == "failed":
            # The input file was rejected: nothing ran, nothing was charged.
            why = row.message or "the input file was rejected"
            refused = Permanent(f"{row.provider} batch {row.remote_id} failed validation: {why}")
            await self.fail_all(row, refused)
            return
        answered = 0  # lines read back that the provider answered 2xx: made, so paid
        for file_id in (row.output_file_id, row.error_file_id):
            if not file_id:
                continue
            members = {job.uid: job for job in await self.rows.members(row.id)}
            if not members:
                break
            async for result in api.results(file_id, {uid: job.spec for uid, job in members.items()}):
                if result.finished is not None or result.paid:
                    answered += 1
                job = members.pop(result.custom_id, None)
                if job is not None:
                    await self.line_outcome(row, job, result)
        if row.completed > answered:
            for job in await self.rows.members(row.id):
                await self._unread(row, job, row.completed - answered)
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
                await s.store.jobs.record_outcome(job.id, OutcomeRecord(facts=let_go))
                return
            batch = await s.batch(job.batch_id)
            outcome = await self._done(job, batch, result.finished.images[0], result.finished)
        elif result.paid:
            await self._paid_without_image(job, result)
            return
        elif result.never_ran:
            await self.requeue(row, job, f"remote batch {row.remote_id} {row.status}: {result.error}")
            return
        elif isinstance(result.error, Permanent):
            outcome = fail(job, result.error, s.clock.wall(), ended=True)
        elif isinstance(result.error, OutOfCredits):
            outcome = requeue(job, result.error.message, refused=True, error=result.error)
        else:
            # Answered with an error (a 5xx, a 429): nothing was made or charged, so the retry is a
            # new line with a reservation of its own, not a re-send of one that may be paid.
            error = result.error if isinstance(result.error, ProviderError) else Transient(str(result.error))
            outcome = self.runner.retry_or_fail(
                job, s.pool.account_limiter(job.provider, job.account), error, refused=True
            )
        await self.commit(job, replace(outcome, facts={**outcome.facts, **let_go}))

    async def _paid_without_image(self, job: JobRow, result: LineResult) -> None:
        """A line answered 2xx whose image cannot be read was made and charged all the same: the
        charge is booked first, then the job fails once with the reason. Its execution counts as
        ended: only a retry by hand pays for a new line (reserved like any start)."""
        s = self.s
        await asyncio.shield(s.budget.settle_finished(job, result.credits_used, None))
        error = result.error if isinstance(result.error, ProviderError) else Permanent(str(result.error))
        outcome = fail(job, error, s.clock.wall())
        facts = {**outcome.facts, "remote_batch": None, "execution": Execution.ENDED}
        await self.commit(job, replace(outcome, facts=facts))

    async def _unread(self, row: RemoteBatchRow, job: JobRow, unread: int) -> None:
        """The provider made `unread` more lines than could be read back (a line cut short, not
        JSON), and no line spoke of this job: its line may be one of them. Counted as paid (the
        reservation booked as its charge) and failed with the reason, never sent again unasked."""
        s = self.s
        await asyncio.shield(s.budget.settle_finished(job, None, None))
        error = Permanent(
            f"{row.provider} batch {row.remote_id}: {unread} of the lines it made could not be read back and"
            " this job's line may be one of them, so it counts as charged; retry the job to pay for"
            " a new one"
        )
        outcome = fail(job, error, s.clock.wall())
        facts = {**outcome.facts, "remote_batch": None, "execution": Execution.ENDED}
        await self.commit(job, replace(outcome, facts=facts))

    async def without_sending(self, jobs: list[JobRow], batch: BatchRow) -> list[JobRow]:
        """Complete what needs no new line, as the one-job path would: a job whose line was paid
        before (a retry after a cancel, say) from its stored result, a job whose image is in the
        cache from there. Returns the jobs still to be sent."""
        left: list[JobRow] = []
        # One query for the lot: this runs every round for every job still waiting its turn.
        keys = [job.cache_key for job in jobs]
        cached = await self.s.store.cache.cached_keys(keys) if batch.cache_enabled else set()
        for job in jobs:
            if job.execution is Execution.FINISHED:
                await self.commit(job, await self._from_paid_result(job, batch))
                continue
            if job.cache_key in cached and job.execution not in LIVE_EXECUTIONS:
                image = await self.s.cache.get(job.cache_key)
                if image is not None:
                    await self.commit(job, await self._done(job, batch, image, None))
                    continue
            left.append(job)
        return left

    async def _from_paid_result(self, job: JobRow, batch: BatchRow) -> OutcomeRecord:
        """Done with the image its paid line brought (kept in cache/ when the line was settled). If
        cache/ lost it, the job fails with the reason rather than paying again unasked."""
        paid = (job.result or {}).get("paid_image")
        image = None
        if isinstance(paid, dict):
            image = await self.s.cache.read(str(paid.get("sha256")), str(paid.get("media_type")))
        if job.result and image is not None:
            finished = replace(Finished.from_json(job.result), images=(image,))
            return await self._done(job, batch, image, finished)
        error = Permanent(
            "the image this job paid for is no longer in cache/; retry the job to pay for a new one"
        )
        outcome = fail(job, error, self.s.clock.wall())
        return replace(outcome, facts={**outcome.facts, "execution": Execution.ENDED})

    async def _done(
        self, job: JobRow, batch: BatchRow, image: Image, finished: Finished | None
    ) -> OutcomeRecord:
        """`runner.done`; or, when the bytes (paid for, or from the cache) turn out not to decode,
        the job fails once with the reason: sending it again would pay again unasked, and leaving it
        would stall every line after it."""
        try:
            return await self.runner.done(job, batch, image, finished)
        except ImageDecodeError as error:
            failure = Permanent(f"the image cannot be decoded ({error}); retry the job to pay for a new one")
            outcome = fail(job, failure, self.s.clock.wall())
            return replace(outcome, facts={**outcome.facts, "execution": Execution.ENDED})

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
