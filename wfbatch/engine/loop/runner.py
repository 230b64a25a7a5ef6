"""One job's run: cache → admit → submit → poll → download → write, computed as an outcome.

`JobRunner.run` drives a job until this run of it ends and returns what that came to as an
`OutcomeRecord` (done, back to the queue, retry later, failed); the engine records it in one
transaction. Facts that must survive a crash mid-run — the start the provider accepted, the charge
of a finished execution, the paid bytes — are recorded as they happen, shielded from cancellation.
"""

from __future__ import annotations

import asyncio
import logging
import random
import statistics
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from wfbatch.core.hashing import idempotency_key
from wfbatch.core.states import ErrorClass, Execution, JobState, ReviewStatus
from wfbatch.engine.clock import Clock
from wfbatch.engine.events import EventSink
from wfbatch.engine.loop.backoff import retry_delay
from wfbatch.engine.loop.budget import Budget
from wfbatch.engine.loop.cache import ImageCache
from wfbatch.engine.loop.limiter import ProviderLimiter, ProviderPaused
from wfbatch.engine.loop.pool import ProviderPool
from wfbatch.engine.loop.progress import ProgressBoard
from wfbatch.engine.loop.storage import is_disk_full
from wfbatch.engine.loop.writer import OutputWriter
from wfbatch.outputs import ImageDecodeError
from wfbatch.protocol import BatchEvent, JobEvent, ProviderEvent
from wfbatch.providers.base import Finished, Image, Provider, Submitted
from wfbatch.providers.errors import (
    AuthenticationFailed,
    OutOfCredits,
    PaidRejection,
    Permanent,
    ProviderError,
    RateLimited,
    Transient,
    Unreachable,
)
from wfbatch.providers.registry import traits
from wfbatch.store import CLEARED_ERROR, AttemptRecord, BatchRow, JobRow, OutcomeRecord, StoreApi

log = logging.getLogger("wfbatch.engine")

def error_fields(error: ProviderError, message: str | None = None) -> dict[str, Any]:
    return {
        "error_class": error.error_class,
        "error_status": error.status,
        "error_message": message or error.message,
        "error_request_id": error.request_id,
    }


def error_attempt(kind: str, error: ProviderError) -> AttemptRecord:
    return AttemptRecord(
        kind=kind,
        outcome=error.error_class.value,
        http_status=error.status,
        message=error.message,
        request_id=error.request_id,
    )


@dataclass
class JobServices:
    """What a job's run needs from its engine."""

    store: StoreApi
    budget: Budget
    cache: ImageCache
    writer: OutputWriter
    pool: ProviderPool
    clock: Clock
    rng: random.Random
    emit: EventSink
    wake: Callable[[], None]
    batch: Callable[[str], Awaitable[BatchRow]]
    latencies: dict[str, deque[float]] = field(default_factory=dict)
    progress: ProgressBoard = field(default_factory=ProgressBoard)
    claim: Callable[[str, str], dict[str, Any]] = lambda provider, account: {}
    """The owner stamp of a job's move to `submitting` (engine/loop/fleet.py)."""

    def expected_latency(self, provider: str) -> float:
        """Median time to finish of recent executions: no point polling much before it."""
        samples = self.latencies.get(provider)
        if not samples or len(samples) < 3:
            return 0.0
        return statistics.median(samples)


class JobRunner:
    def __init__(self, services: JobServices) -> None:
        self.s = services

    def emit_job(self, job: JobRow, state: JobState | None = None) -> None:
        self.s.emit(
            JobEvent(id=job.id, batch_id=job.batch_id, state=state or job.state)
        )

    async def run(self, job: JobRow) -> OutcomeRecord | None:
        """Drive `job` until this run of it ends; the outcome to record (None: nothing to record —
        held back by a cap, canceled meanwhile, or its provider cannot be built)."""
        s = self.s
        batch = await s.batch(job.batch_id)
        account = s.pool.account(job.provider, job.account).name
        job = replace(job, account=account)
        if job.state is JobState.QUEUED and s.pool.account_hold(job.provider, account) is not None:
            return None  # its account was held since it was picked: the next round picks again
        provider = await s.pool.get(job.provider, account)
        if provider is None:
            return None
        limiter = s.pool.account_limiter(job.provider, account)
        # Only a job that starts a new execution can have had its start refused outright (429,
        # 402, a paused provider): one resumed or re-sent may have an execution that charges.
        fresh = job.state is JobState.QUEUED and job.execution is Execution.NONE
        try:
            if job.state is JobState.QUEUED:
                if fresh and batch.cache_enabled:
                    image = await s.cache.get(job.cache_key)
                    if image is not None:
                        return await self.done(job, batch, image, None)
                started = await self._start(job, batch, provider, fresh=fresh)
                if started is None:
                    return None
                job = started
            resend = (
                not fresh and job.execution is Execution.MAYBE and job.remote_id is None and not job.result
            )
            finished = await self._execute(job, provider, limiter, resend=resend)
            if finished is None:
                return None  # canceled while the start was on the wire; the cancel recorded it
            job = await self.settle(job, finished)
            images = await provider.download(finished)
            if not images:
                raise Transient("the provider finished without an image", request_id=finished.request_id)
            return await self.done(job, batch, images[0], finished)
        except ProviderPaused as paused:
            return requeue(job, f"provider paused: {paused.reason}", refused=fresh)
        except RateLimited as error:
            wait = limiter.on_rate_limited(error.retry_after, error.message)
            s.pool.key_told_to_wait(job.provider, job.account, wait, error.message)
            s.emit(
                ProviderEvent(event="blocked", provider=job.provider, blocked_for=wait, reason=error.message)
            )
            return requeue(job, f"rate limited; provider waits {wait:.0f} s", refused=fresh, error=error)
        except (AuthenticationFailed, Unreachable, OutOfCredits) as error:
            # About the account, not the prompt: the provider pauses with the reason and every job
            # stays queued (an unreachable one is probed again with backoff).
            reason = s.pool.pause_for_account(job.provider, error, job.account)
            return requeue(job, reason, refused=fresh, error=error)
        except PaidRejection as rejection:
            return await self._rejected(job, batch, rejection)
        except Permanent as error:
            return fail(job, error, s.clock.wall(), ended=True)
        except (Transient, ImageDecodeError, OSError) as error:
            if is_disk_full(error):
                raise  # not the job's fault: the engine holds everything until there is room
            transient = (
                error if isinstance(error, Transient) else Transient(f"{type(error).__name__}: {error}")
            )
            # A first start that could not even connect created nothing: the retry is a first send
            # again (no look-up, no "may be charged twice"), and nothing stays reserved for it.
            return self.retry_or_fail(job, limiter, transient, refused=fresh and transient.start_not_sent)

    async def settle(self, job: JobRow, finished: Finished) -> JobRow:
        """The execution finished with an image, so it is paid for: the charge, and what a crash
        before the image is written must find again (the URLs, or the paid bytes themselves), are
        recorded first. Shared by the one-job path and remote batches (engine.remote_batches)."""
        if job.execution is Execution.FINISHED:
            return job
        result = await self._result_to_keep(job, finished)
        credits = await asyncio.shield(self.s.budget.settle_finished(job, finished.credits_used, result))
        return replace(job, execution=Execution.FINISHED, credits=credits, reserved=None)

    def retry_or_fail(
        self, job: JobRow, limiter: ProviderLimiter, error: ProviderError, *, refused: bool = False
    ) -> OutcomeRecord:
        """Retry later with backoff, or fail once the attempts are used up. An execution that may
        exist keeps its reservation either way (it may charge); see `execution_after`. When its key
        can be replayed for free it gets as many tries again, and a job that fails while it may exist
        says so (`paid_image_note`). `refused`: this run's new start is known not to have reached
        the provider."""
        limits = limiter.limits
        # The built-in local provider charges nothing: nothing of it "may exist" at a price.
        may_exist = job.execution is Execution.MAYBE and not refused and traits(job.provider).remote
        replayable = may_exist and job.remote_id is None and traits(job.provider).idempotent_submit
        message: str | None = None
        if job.attempts >= limits.max_attempts:
            # While an execution may exist, the attempt count alone is no reason to give up: where
            # replaying its idempotency key is free, the next try finds it (or makes the one image
            # the job wants), for as many tries again.
            if not replayable or job.attempts >= 2 * limits.max_attempts:
                note = f"gave up after {job.attempts} attempts"
                if may_exist:
                    note += f"; {paid_image_note(job)}"
                record = fail(job, error, self.s.clock.wall(), note=note)
                return replace(record, start_refused=refused)
            message = (
                f"{error.message} (attempt {job.attempts}; its execution may exist: the same"
                " idempotency key is sent again, which cannot start a second one)"
            )
        delay = retry_delay(job.attempts, limits.backoff_initial, limits.backoff_max, self.s.rng)
        fields = {
            **error_fields(error, message),
            "error_class": ErrorClass.TRANSIENT,
            "next_attempt_at": self.s.clock.wall() + delay,
        }
        return OutcomeRecord(
            target=JobState.RETRYING,
            fields=fields,
            attempt=error_attempt("job", error),
            start_refused=refused,
        )

    async def _start(self, job: JobRow, batch: BatchRow, provider: Provider, *, fresh: bool) -> JobRow | None:
        """Admit the job under every cap and mark it submitting; None if it must wait."""
        s = self.s
        try:
            admission = await s.budget.admit(job, batch, provider)
        except AuthenticationFailed as error:
            # The cost estimate's answer refused the key: the account is disabled before anything
            # else is sent on it, and the job, never marked as started, waits for the next pick.
            s.pool.pause_for_account(job.provider, error, job.account)
            return None
        if admission.account_capped and admission.refusal is not None:
            s.pool.hold_account_for_today(job.provider, job.account, admission.refusal)
            return None  # stays queued: the next round picks another account
        if admission.refusal is not None:
            s.emit(
                BatchEvent(event="held", batch_id=batch.id, reason=admission.refusal, provider=job.provider)
            )
            return None  # stays queued until the cap is raised (or a new day for daily caps)
        execution = Execution.MAYBE if fresh else job.execution
        if not await s.store.jobs.transition(
            job.id,
            [JobState.QUEUED],
            JobState.SUBMITTING,
            attempts=job.attempts + 1,
            started_at=job.started_at or s.clock.wall(),
            execution=execution,
            account=job.account,
            **s.claim(job.provider, job.account or ""),
        ):
            if fresh:
                await s.budget.release(job.id)
            return None  # canceled or changed meanwhile
        started = replace(
            job,
            state=JobState.SUBMITTING,
            attempts=job.attempts + 1,
            reserved=admission.reserved,
            execution=execution,
        )
        self.emit_job(started)
        return started

    async def _execute(
        self, job: JobRow, provider: Provider, limiter: ProviderLimiter, *, resend: bool
    ) -> Finished | None:
        """Submit (or resume) the job's remote execution until it has finished; None if the job was
        canceled meanwhile. `resend`: an earlier start of this key may have gone through (a crash, a
        lost answer): the provider is asked to find it first, and only if it cannot is it sent again."""
        s = self.s
        if job.result:
            return await self._finished_from_result(job.result)
        if job.remote_id is None:
            key = idempotency_key(job.uid, job.generation)
            adopted = await provider.reconcile(job.spec, key, job.started_at) if resend else None
            if resend and adopted is None:
                await self._mark_resend(job)
            outcome = adopted or await provider.submit(job.spec, key)
            # Shielded: a shutdown arriving now must not lose the remote id the provider just gave.
            moved = await asyncio.shield(self._record_start(job, outcome))
            s.wake()  # the provider answered: slots held back until it had may be filled now
            if isinstance(outcome, Finished):
                return outcome
            if not moved:
                return None
            job = replace(job, state=JobState.RUNNING, remote_id=outcome.remote_id, handle=outcome.handle)
            self.emit_job(job)
        elif job.state is not JobState.RUNNING:
            await s.store.jobs.transition(job.id, [job.state], JobState.RUNNING)
            job = replace(job, state=JobState.RUNNING)
        return await self._poll_until_finished(job, provider, limiter)

    async def _record_start(self, job: JobRow, outcome: Submitted | Finished) -> bool:
        """The provider accepted the start: the attempt, and the execution's ids (facts kept even if
        the job was canceled meanwhile — they let its charge be settled and a retry resume it)."""
        attempt = AttemptRecord(
            kind="start",
            outcome="accepted",
            http_status=outcome.http_status,
            request_id=outcome.request_id,
            remote_id=outcome.remote_id,
        )
        if isinstance(outcome, Finished):
            await self.s.store.jobs.record_outcome(job.id, OutcomeRecord(attempt=attempt))
            return True
        facts = {"remote_id": outcome.remote_id, "handle": outcome.handle}
        record = OutcomeRecord(target=JobState.RUNNING, facts=facts, attempt=attempt)
        return await self.s.store.jobs.record_outcome(job.id, record)

    async def _poll_until_finished(
        self, job: JobRow, provider: Provider, limiter: ProviderLimiter
    ) -> Finished:
        with self.s.progress.watching(job.id, job.batch_id, provider, job.handle):
            return await self._poll(job, provider, limiter)

    async def _poll(self, job: JobRow, provider: Provider, limiter: ProviderLimiter) -> Finished:
        s, limits = self.s, limiter.limits
        remote_id, handle = job.remote_id, job.handle
        if handle is None:
            raise Permanent(f"job {job.id} has no stored poll handle for its execution {remote_id}")
        started = s.clock.monotonic()
        delay = max(limits.poll_initial, s.expected_latency(job.provider) * 0.75)
        failures = 0
        while True:
            await s.clock.sleep(delay)
            running_for = s.clock.monotonic() - started
            if running_for > limits.max_run_seconds:
                # A slot held forever by an execution that never ends would stall the batch. The try
                # fails; the remote id is kept, so a retry polls the same (maybe paid) execution again.
                raise Transient(
                    f"execution {remote_id} still not finished after {running_for:.0f} s"
                    f" (max_run_seconds = {limits.max_run_seconds:g})"
                )
            try:
                # The longest-running executions are the likeliest to be finished: when requests
                # are scarce, their polls go first.
                result = await provider.poll(handle, priority=running_for)
            except RateLimited as error:
                wait = limiter.on_rate_limited(error.retry_after, error.message)
                self.s.pool.key_told_to_wait(job.provider, job.account, wait, error.message)
                await self._record_poll_error(job, error)
                delay = min(wait, limits.poll_max)
                continue
            except Transient as error:
                failures += 1
                await self._record_poll_error(job, error)
                if failures >= limits.max_attempts:
                    raise
                delay = min(limits.poll_max, delay * limits.poll_factor)
                continue
            if isinstance(result, Finished):
                s.latencies.setdefault(job.provider, deque(maxlen=50)).append(s.clock.monotonic() - started)
                attempt = AttemptRecord(
                    kind="poll",
                    outcome="finished",
                    http_status=result.http_status,
                    request_id=result.request_id,
                    remote_id=remote_id,
                )
                await s.store.jobs.record_outcome(job.id, OutcomeRecord(attempt=attempt))
                return result
            delay = min(limits.poll_max, delay * limits.poll_factor)

    async def _record_poll_error(self, job: JobRow, error: ProviderError) -> None:
        record = OutcomeRecord(fields=error_fields(error), attempt=error_attempt("poll", error))
        await self.s.store.jobs.record_outcome(job.id, record)

    async def _result_to_keep(self, job: JobRow, finished: Finished) -> dict[str, Any] | None:
        """What must survive a crash before the image is written: the URLs to download again, or —
        from a synchronous provider, whose bytes exist only in its answer — the bytes themselves,
        written to cache/ before anything else, so a crash never pays for them twice."""
        if finished.images:
            image = finished.images[0]
            sha256 = await self.s.cache.put(job.cache_key, image)
            return {**finished.to_json(), "paid_image": {"sha256": sha256, "media_type": image.media_type}}
        return finished.to_json() if finished.urls else None

    async def _rejected(self, job: JobRow, batch: BatchRow, rejection: PaidRejection) -> OutcomeRecord:
        """A paid image that is not a success (Stability's CONTENT_FILTERED): kept in rejected/ and its
        charge booked before the job fails, so the money spent is visible. The execution counts as
        ended: a retry by hand is a new, paid request with a new key."""
        relative = await self.s.writer.write_image(batch, job, rejection.image, folder=ReviewStatus.REJECTED)
        await asyncio.shield(self.s.budget.settle_finished(job, rejection.credits_used, None))
        record = fail(job, rejection, self.s.clock.wall(), note=f"kept as {relative}")
        return replace(record, facts={"execution": Execution.ENDED})

    async def _finished_from_result(self, result: dict[str, Any]) -> Finished:
        finished = Finished.from_json(result)
        paid = result.get("paid_image")
        if isinstance(paid, dict):
            image = await self.s.cache.read(str(paid.get("sha256")), str(paid.get("media_type")))
            if image is not None:
                finished = replace(finished, images=(image,))
        return finished

    async def _mark_resend(self, job: JobRow) -> None:
        """A start is about to be re-sent although an earlier one may have gone through (a crash or
        a lost answer). Where the provider recognises re-sends (an idempotency key) that is free;
        elsewhere it may be charged twice, and the job says so."""
        if traits(job.provider).idempotent_submit or job.possible_duplicate_charge:
            return
        last = job.error_message or "the process stopped while the request was on the wire"
        why = f"a start was sent again after its outcome was lost ({last}); {job.provider} has no idempotency"
        await self.s.store.jobs.update_job(job.id, possible_duplicate_charge=why)

    async def done(
        self, job: JobRow, batch: BatchRow, image: Image, finished: Finished | None
    ) -> OutcomeRecord:
        cache_hit = finished is None
        relative = await self.s.writer.write_image(batch, job, image)
        if not cache_hit:
            await self.s.cache.put(job.cache_key, image)
        fields = {
            "file": relative,
            "cache_hit": cache_hit,
            "credits": 0.0 if cache_hit else job.credits,
            "result": finished.to_json() if finished else None,
            "finished_at": self.s.clock.wall(),
            **CLEARED_ERROR,
        }
        return OutcomeRecord(target=JobState.DONE, fields=fields)


def requeue(job: JobRow, why: str, *, refused: bool, error: ProviderError | None = None) -> OutcomeRecord:
    """Back to queued without using up an attempt (429, 402, a bad key, a paused provider)."""
    log.info("job %s back in the queue: %s", job.id, why)
    fields: dict[str, Any] = {"attempts": max(0, job.attempts - 1)}
    if error is not None:
        fields |= error_fields(error)
    return OutcomeRecord(
        target=JobState.QUEUED,
        fields=fields,
        attempt=error_attempt("start", error) if error is not None else None,
        start_refused=refused,
    )


def paid_image_note(job: JobRow) -> str:
    """What a job that fails while its execution may exist tells its user: that money may have been
    spent, and how to get the image without spending it again."""
    retry = f"`wfbatch retry {job.id}`"
    if job.remote_id is not None:
        # Only a reservation makes the background settler ask (engine.canceled): money to settle.
        booked = ""
        if job.reserved is not None:
            booked = f"its charge is booked once {job.provider} says it finished, and "
        return (
            f"a paid image may exist (execution {job.remote_id}); {booked}{retry} collects it"
            " without paying again"
        )
    if traits(job.provider).idempotent_submit:
        return (
            f"a paid image may exist (a start reached {job.provider}, its answer was lost); {retry}"
            " collects it without paying again (the same idempotency key is replayed)"
        )
    return (
        f"a paid image may exist (a start may have reached {job.provider}, its answer was lost);"
        f" {retry} collects it where {job.provider} can find it again, else sends the start again"
        " (which may be charged twice)"
    )


def fail(
    job: JobRow, error: ProviderError, now: float, note: str | None = None, *, ended: bool = False
) -> OutcomeRecord:
    """Fail the job. `ended`: the provider said its execution ended without an image (a FAILED
    execution, a refused start): not charged, so its reservation goes back and a hand retry may use
    a new key. Otherwise the reservation stays until the provider says more, and a retry resumes it."""
    message = f"{error.message} ({note})" if note else error.message
    return OutcomeRecord(
        target=JobState.FAILED,
        fields={"finished_at": now, **error_fields(error, message)},
        attempt=error_attempt("job", error),
        ended=ended,
    )
