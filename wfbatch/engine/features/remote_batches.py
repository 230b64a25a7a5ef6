"""Jobs in batch mode, grouped into remote batches (a provider's batch API: OpenAI Batch, half price
within 24 hours), next to the one-job path (`runner.JobRunner`), which never sees them.

The engine's loop calls `gather`: queued batch-mode jobs of one batch and model that have waited
`batch_gather_seconds` are first completed where no line is needed (a line paid before, an image in
the cache); of the rest, each cache key goes once (a duplicate waits for the image, then takes it
from the cache, as on the one-job path); every line is admitted under the caps like any start (its
reservation at the batch price) and marked `submitting` (execution `maybe`) in ONE transaction with
a new remote-batch row. One task per live
row then drives it step by step, each step committed before the next depends on it (see
`store.remote_batches.Step`): upload → "creating" → create (after a crash in between, the remote
batch is looked up by its tag first, never created twice) → slow polls → the output and error files
streamed and mapped back by `custom_id`. Each job's outcome is computed with the runner's own
helpers (`settle`, `done`, `fail`, `requeue`) and recorded through the engine, exactly as for one job.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from itertools import groupby

from wfbatch.core.states import Execution, JobState
from wfbatch.engine.features.remote_results import RemoteResults
from wfbatch.engine.loop.budget import Admission
from wfbatch.engine.loop.limiter import ProviderPaused
from wfbatch.engine.loop.runner import JobRunner, JobServices, fail
from wfbatch.protocol import BatchEvent, RemoteBatchEvent
from wfbatch.providers.base import BatchLine, Provider, RemoteBatchApi, RemoteBatchInfo
from wfbatch.providers.errors import (
    AuthenticationFailed,
    OutOfCredits,
    Permanent,
    ProviderError,
    RateLimited,
    Transient,
    Unreachable,
)
from wfbatch.providers.registry import REGISTRY
from wfbatch.settings import BatchModeSettings, ProviderLimits, Settings
from wfbatch.store import BatchRow, JobRow, OutcomeRecord, RemoteBatchRow, Step

log = logging.getLogger("wfbatch.engine")

GATHER_LIMIT = 50_000
"""Queued batch-mode jobs looked at per provider and round (one remote batch's worth)."""
_ACCOUNT_ERRORS = (AuthenticationFailed, Unreachable, OutOfCredits)

Record = Callable[[JobRow, OutcomeRecord], Awaitable[None]]


def batch_settings(limits: ProviderLimits) -> BatchModeSettings | None:
    """The batch-mode settings of a provider section (only OpenAI's has them today)."""
    return limits if isinstance(limits, BatchModeSettings) else None


class RemoteBatches:
    def __init__(
        self,
        services: JobServices,
        runner: JobRunner,
        record: Record,
        settings: Callable[[], Settings],
        batch_ids: Callable[[], Sequence[str] | None],
    ) -> None:
        self.s = services
        self.runner = runner
        self.rows = services.store.remote_batches
        self._record = record
        self._settings = settings
        self._batch_ids = batch_ids
        """The engine's batches (None: all), read each round: `wfbatch run` adds its own as it
        accepts them."""
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.results = RemoteResults(services, runner, self.rows, record, self._section, self._emit)

    # -- what the engine calls ----------------------------------------------------------------

    def section_mode(self, provider: str) -> str | None:
        """The provider section's mode where it has a batch API (None: it has none)."""
        if provider not in REGISTRY or not REGISTRY[provider].traits.batch_api:
            return None
        section = batch_settings(self._settings().provider_limits(provider))
        return section.mode if section is not None else None

    async def tick(
        self, providers: Sequence[str], held: Callable[[str], bool], budget_held: Sequence[str]
    ) -> None:
        """One round: drive every live remote batch (after a restart too), then gather new ones
        for the providers not held (`budget_held`: batches whose budget holds new starts)."""
        await self.resume()
        for name in providers:
            mode = self.section_mode(name)
            if mode is None or held(name):
                continue
            await self._gather(name, mode, budget_held)

    async def resume(self) -> None:
        for row in await self.rows.live(self._batch_ids()):
            if row.id not in self._tasks:
                task = asyncio.create_task(self._drive(row.id), name=f"remote-batch-{row.id}")
                self._tasks[row.id] = task
                task.add_done_callback(functools.partial(self._ended, row.id))

    async def shutdown(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def after_cancel(self, job_ids: Sequence[int]) -> None:
        """Jobs were canceled: a live remote batch none of whose jobs is still wanted is canceled
        remotely (its finished lines are still delivered and settled)."""
        for row in await self.rows.rows_of_jobs(job_ids):
            members = await self.rows.members(row.id)
            if any(job.state is not JobState.CANCELED for job in members) or row.cancel_requested:
                continue
            await self.rows.update(row.id, cancel_requested=1)
            if row.remote_id is None:
                continue  # not created yet: its task stops before creating it
            api = await self._api(row.provider, row.account)
            if api is None:
                continue
            try:
                info = await api.cancel(row.remote_id)
            except (ProviderError, ProviderPaused) as error:
                log.warning("remote batch %s: could not cancel it: %s", row.remote_id, error)
                continue
            await self._observe(row, info)

    # -- gathering ----------------------------------------------------------------------------

    async def _gather(self, provider_name: str, mode: str, budget_held: Sequence[str]) -> None:
        s = self.s
        section = batch_settings(self._settings().provider_limits(provider_name))
        if section is None:
            return
        configured = s.pool.accounts(provider_name)
        several = len(configured) > 1
        # A remote batch goes to one account (its key uploads, creates, polls and cancels it): the
        # lines are shared out among the accounts not held, each within its own queue limits.
        accounts = [
            a.name for a in configured if not several or s.pool.account_hold(provider_name, a.name) is None
        ]
        if not accounts:
            return
        jobs = await s.store.jobs.ready_jobs(
            provider_name,
            GATHER_LIMIT,
            self._batch_ids(),
            exclude_batch_ids=budget_held,
            batch_mode=(True, mode),
            now=s.clock.wall(),
        )
        if not jobs:
            return
        now = s.clock.wall()

        def group(job: JobRow) -> tuple[str, str]:
            return job.batch_id, job.spec.model or section.model

        for (batch_id, model), members in groupby(sorted(jobs, key=group), key=group):
            waiting = list(members)
            if now - min(job.updated_at for job in waiting) < section.batch_gather_seconds:
                continue  # let the rest of the file arrive first: one remote batch, not many
            waiting = await self.results.without_sending(waiting, await s.batch(batch_id))
            share = -(-len(waiting) // len(accounts))  # as even as the accounts' room allows
            for account in accounts:
                if not waiting:
                    break
                live, enqueued = await self.rows.live_lines(
                    provider_name, model, account if several else None
                )
                if live >= section.max_remote_batches:
                    continue
                room = min(section.batch_max_lines, share)
                if section.batch_queue_limit is not None:
                    room = min(room, section.batch_queue_limit - enqueued)
                if room <= 0:
                    continue
                api = await self._api(provider_name, account)
                if api is None:
                    continue
                taken = await self._gather_one(provider_name, account, api, batch_id, model, waiting, room)
                waiting = [job for job in waiting if job.id not in taken]

    async def _gather_one(
        self,
        provider_name: str,
        account: str,
        api: RemoteBatchApi,
        batch_id: str,
        model: str,
        jobs: list[JobRow],
        room: int,
    ) -> set[int]:
        """One remote batch of these jobs on `account`; the ids of the jobs that joined it."""
        s = self.s
        batch = await s.batch(batch_id)
        provider = await s.pool.get(provider_name, account)
        if provider is None:
            return set()
        # One line per image: a key already being made (in a live remote batch or this one) waits,
        # then comes from the cache — as on the one-job path (the engine's keys in flight). Only
        # remote batches this engine drives count: `run` must not wait on one nobody drives.
        making = await self.rows.keys_in_flight(provider_name, self._batch_ids())
        chosen: list[JobRow] = []
        size = 0
        for job in jobs:
            if len(chosen) >= room:
                break
            if batch.cache_enabled and job.cache_key in making:
                continue
            try:
                line = api.line(job.spec, job.uid)
            except Permanent as error:
                await self.results.commit(job, fail(job, error, s.clock.wall(), ended=True))
                continue
            size += len(api.encode([line]))
            if size > api.max_file_bytes:
                break
            admission = await self._admit_line(replace(job, account=account), batch, provider)
            if admission.account_capped and admission.refusal is not None:
                s.pool.hold_account_for_today(provider_name, account, admission.refusal)
                break  # this account's cap: the others may take the rest
            if admission.refusal is not None:
                s.emit(
                    BatchEvent(
                        event="held", batch_id=batch_id, reason=admission.refusal, provider=provider_name
                    )
                )
                break
            chosen.append(job)
            making.add(job.cache_key)
        if not chosen:
            return set()
        tag = f"wfbatch-{uuid.uuid4().hex}"
        gathered = await self.rows.gather(
            provider_name, batch_id, model, tag, [j.id for j in chosen], s.clock.wall(), account
        )
        joined = set(gathered[1]) if gathered is not None else set()
        for job in chosen:
            if job.id not in joined:
                await s.budget.release(job.id)  # canceled meanwhile: its reservation goes back
        if gathered is None:
            return set()
        row = gathered[0]
        log.info(
            "remote batch %s: %d jobs of batch %s (%s) on account %s",
            row.id, len(joined), batch_id, model, account,
        )
        for job in chosen:
            if job.id in joined:
                self.runner.emit_job(job, JobState.SUBMITTING)
        self._emit(row)
        await self.resume()
        return joined

    async def _admit_line(self, job: JobRow, batch: BatchRow, provider: Provider) -> Admission:
        """Every line sent is a new paid request: reserved under the caps like any start. An earlier
        request of the job that may have been charged (its answer lost on the direct path) is
        counted as spent first, and the job says it may be charged twice: no budget counts on money
        that may be gone, and no line goes out unreserved."""
        s = self.s
        if job.execution is Execution.MAYBE:
            await s.budget.ledger.assume_charged(job.id)
            why = job.possible_duplicate_charge or (
                "sent in a remote batch after an earlier request's outcome was lost"
                f" ({job.error_message or 'no answer'}); {job.provider} has no idempotency"
            )
            await s.store.jobs.update_job(job.id, execution=Execution.ENDED, possible_duplicate_charge=why)
            job = replace(job, execution=Execution.ENDED, reserved=None, possible_duplicate_charge=why)
        return await s.budget.admit(job, batch, provider)

    # -- one remote batch, step by step -------------------------------------------------------

    def _ended(self, row_id: int, _task: object = None) -> None:
        self._tasks.pop(row_id, None)
        self.s.wake()

    async def _api(self, provider_name: str, account: str | None) -> RemoteBatchApi | None:
        """The batch API of the account a remote batch belongs to (None: the provider's first)."""
        provider = await self.s.pool.get(provider_name, account)
        return None if provider is None else provider.remote_batches()

    def _section(self, provider_name: str) -> BatchModeSettings:
        section = batch_settings(self._settings().provider_limits(provider_name))
        if section is None:
            raise LookupError(f"{provider_name} has no batch mode")
        return section

    async def _drive(self, row_id: int) -> None:
        failures = 0
        while True:
            row = await self.rows.get(row_id)
            if row is None or row.step is Step.CLOSED:
                return
            api = await self._api(row.provider, row.account)
            if api is None:
                await self.s.clock.sleep(self._section(row.provider).batch_poll_interval)
                continue
            try:
                wait = await self._step(row, api)
                failures = 0
            except asyncio.CancelledError:
                raise
            except (ProviderPaused, *_ACCOUNT_ERRORS) as error:
                if row.remote_id is None:
                    reason = (
                        error.reason
                        if isinstance(error, ProviderPaused)
                        else self.s.pool.pause_for_account(row.provider, error, row.account)
                    )
                    await self.results.release_all(row, f"provider paused: {reason}")
                    return
                wait = self._section(row.provider).batch_poll_interval
            except RateLimited as error:
                # The files and batches endpoints have their own limits: wait as told, then go on.
                limiter = self.s.pool.account_limiter(row.provider, row.account)
                wait = limiter.on_rate_limited(error.retry_after, error.message)
            except Permanent as error:
                if row.remote_id is None:
                    await self.results.fail_all(row, error)
                    return
                failures += 1
                wait = self._backoff(row.provider, failures)
                log.warning("remote batch %s: %s", row.remote_id, error)
            except (Transient, OSError) as error:
                failures += 1
                wait = self._backoff(row.provider, failures)
                log.warning("remote batch %s (%s): %s; trying again in %.0f s", row.id, row.step, error, wait)
            except Exception:
                # A bug must not lose the remote batch: its row stays, and is driven again later.
                failures += 1
                wait = self._backoff(row.provider, failures)
                log.exception("remote batch %s: unexpected error", row.id)
            if wait > 0:
                await self.s.clock.sleep(wait)

    def _backoff(self, provider_name: str, failures: int) -> float:
        section = self._section(provider_name)
        return float(min(section.batch_poll_interval, section.backoff_initial * 2.0 ** (failures - 1)))

    async def _step(self, row: RemoteBatchRow, api: RemoteBatchApi) -> float:
        """Take the row one step further; how long to wait before the next."""
        now = self.s.clock.wall()
        if row.step in (Step.GATHERED, Step.UPLOADING):
            if row.cancel_requested:
                await self.results.release_all(row, "canceled before the remote batch was created")
                return 0.0
            file_id = await api.find_file(row.tag) if row.step is Step.UPLOADING else None
            if file_id is None:
                # Written before the upload: a crash from here on looks the file up by its name.
                await self.rows.update(row.id, step=Step.UPLOADING)
                members = await self.rows.members(row.id)
                lines: list[BatchLine] = [api.line(job.spec, job.uid) for job in members]
                file_id = await api.upload(row.tag, api.encode(lines))
            await self.rows.update(row.id, file_id=file_id, step=Step.UPLOADED)
            return 0.0
        if row.step is Step.UPLOADED:
            if row.cancel_requested:
                await self.results.release_all(row, "canceled before the remote batch was created")
                return 0.0
            # Written before the request: a crash from here on looks the batch up by its tag.
            await self.rows.update(row.id, step=Step.CREATING)
            return await self._create(row, api, now)
        if row.step is Step.CREATING:
            found = await api.find(row.tag)
            if found is not None:
                log.info("remote batch %s: found %s created before a restart", row.id, found.remote_id)
                await self.rows.started(row.id, found.remote_id, found.status, now)
                return 0.0
            return await self._create(row, api, now)
        if row.step is Step.STARTED:
            assert row.remote_id is not None
            info = await api.get(row.remote_id)
            if row.cancel_requested and not info.ended and info.status != "cancelling":
                # Canceled while it was being created (or the first cancel did not go through):
                # every line it ran from now on would be billed for jobs nobody wants.
                info = await api.cancel(row.remote_id)
            row = await self._observe(row, info)
            if info.ended:
                await self.rows.update(
                    row.id,
                    step=Step.COLLECTING,
                    output_file_id=info.output_file_id,
                    error_file_id=info.error_file_id,
                    message="; ".join(info.errors) or None,
                )
                return 0.0
            return self._section(row.provider).batch_poll_interval
        if row.step is Step.COLLECTING:
            await self.results.collect(row, api)
            return 0.0
        return 0.0

    async def _create(self, row: RemoteBatchRow, api: RemoteBatchApi, now: float) -> float:
        assert row.file_id is not None
        info = await api.create(row.file_id, row.tag)
        await self.rows.started(row.id, info.remote_id, info.status, now)
        started = await self.rows.get(row.id)
        if started is not None:
            for job in await self.rows.members(row.id):
                self.runner.emit_job(job, JobState.RUNNING)
            self._emit(started)
        self.s.wake()
        return 0.0

    async def _observe(self, row: RemoteBatchRow, info: RemoteBatchInfo) -> RemoteBatchRow:
        await self.rows.update(
            row.id,
            status=info.status,
            total=info.total,
            completed=info.completed,
            failed=info.failed,
            polled_at=self.s.clock.wall(),
        )
        updated = await self.rows.get(row.id)
        if updated is None:
            return row
        self._emit(updated)
        return updated

    def _emit(self, row: RemoteBatchRow) -> None:
        self.s.emit(
            RemoteBatchEvent(
                id=row.id,
                batch_id=row.batch_id,
                provider=row.provider,
                step=row.step.value,
                remote_id=row.remote_id,
                status=row.status,
                lines=row.lines,
                completed=row.completed,
                failed=row.failed,
                reason=row.message,
            )
        )
