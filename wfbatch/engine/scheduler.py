"""The scheduler: picks ready jobs (priority, then age) and drives each one through
cache lookup → submit → poll → download → output, under each provider's limits.

Every state change is committed before the network call that depends on it, so a crash at any point
leaves a job that the next start can finish: `submitting` jobs are re-sent with the same
idempotency key, `running` jobs resume polling (or downloading) their stored remote execution.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import random
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from wfbatch.core.hashing import idempotency_key
from wfbatch.core.models import JobSpec
from wfbatch.core.states import ErrorClass, Execution, JobState
from wfbatch.engine.backoff import retry_delay
from wfbatch.engine.budget import Budget
from wfbatch.engine.cache import ImageCache
from wfbatch.engine.clock import Clock, SystemClock
from wfbatch.engine.events import EventSink, discard
from wfbatch.engine.limiter import ProviderLimiter, ProviderPaused, start_of_today
from wfbatch.engine.storage import is_disk_full, probe_free_space
from wfbatch.engine.writer import OutputWriter
from wfbatch.home import HomeLayout
from wfbatch.outputs import CONTACT_SHEET_FILE_NAME, MANIFEST_FILE_NAME, ImageDecodeError
from wfbatch.protocol import BatchEvent, EngineEvent, JobEvent, ProviderEvent
from wfbatch.providers.base import Finished, Image, Provider, RequestKind, Submitted
from wfbatch.providers.errors import (
    AuthenticationFailed,
    OutOfCredits,
    Permanent,
    ProviderError,
    RateLimited,
    Transient,
    Unreachable,
)
from wfbatch.providers.registry import build_provider, provider_label, traits
from wfbatch.settings import Settings
from wfbatch.store import BatchRow, JobRow, Store

log = logging.getLogger("wfbatch.engine")

# Polls of executions that have run longest are the likeliest to find a finished image: when the
# request budget is the bottleneck, they go first. The job's task sets this before each poll.
poll_priority: contextvars.ContextVar[float] = contextvars.ContextVar("poll_priority", default=0.0)

GLOBAL_SCOPE = "global"
IDLE_WAKE = 1.0


@dataclass(frozen=True)
class StopReason:
    """Why `run_until_idle` returned."""

    code: str
    """`done` (nothing left to do), `paused` (work left that cannot proceed), `stopped` (asked to)."""
    message: str
    details: dict[str, Any] = field(default_factory=dict)


class _PriorityGate:
    """The limiter as seen by one provider: polls carry the calling job's priority."""

    def __init__(self, limiter: ProviderLimiter) -> None:
        self._limiter = limiter

    async def acquire(self, kind: RequestKind, priority: float = 0.0) -> None:
        if kind is RequestKind.POLL:
            priority = max(priority, poll_priority.get())
        await self._limiter.acquire(kind, priority)

    def observe(self, kind: RequestKind, status: int, headers: Any) -> None:
        self._limiter.observe(kind, status, headers)


class Engine:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        layout: HomeLayout,
        *,
        clock: Clock | None = None,
        events: EventSink = discard,
        batch_ids: Sequence[str] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.layout = layout
        self.clock = clock or SystemClock()
        self._emit = events
        self.batch_ids = list(batch_ids) if batch_ids is not None else None
        self._rng = rng or random.Random()
        self.limiters: dict[str, ProviderLimiter] = {}
        self._providers: dict[str, Provider] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._keys_in_flight: set[str] = set()
        self._batches: dict[str, BatchRow] = {}
        self._latencies: dict[str, deque[float]] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self.global_paused: str | None = None
        self.cache = ImageCache(layout.cache, store)
        self.writer = OutputWriter(store, self.provider_label)
        self.budget = Budget(store, settings, self.clock)
        self.balances: dict[str, float] = {}
        """Credit balances the providers reported (refreshed by the daemon's loop)."""
        self.storage_problem: str | None = None
        """Set while writes fail for lack of space: nothing runs until a probe write succeeds."""
        self._storage_backoff = STORAGE_BACKOFF_MIN
        self._unreachable_backoff: dict[str, float] = {}

    @property
    def hold_reason(self) -> str | None:
        """Why nothing at all runs now (a full disk, or a pause by the user), or None."""
        return self.storage_problem or self.global_paused

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load pauses and resume what a previous process left in flight."""
        pauses = await self.store.pauses()
        self.global_paused = pauses.get(GLOBAL_SCOPE)
        for scope, reason in pauses.items():
            if scope.startswith("provider:"):
                self.limiter(scope.removeprefix("provider:")).pause(reason, {"by": "user"})
        released = await self.budget.release_leaked()
        if released:
            log.info("released %d credit reservations left behind by a crash", released)
        await self._reconcile_batch_files()
        await self._adopt_in_flight()

    async def _adopt_in_flight(self) -> None:
        """Resume jobs left in flight with no task driving them: after a crash, or writes that
        failed while the disk was full."""
        for job in await self.store.in_flight_jobs():
            if job.id in self._tasks or (self.batch_ids is not None and job.batch_id not in self.batch_ids):
                continue
            log.info("resuming job %s (%s, remote id %s)", job.id, job.state, job.remote_id)
            self._spawn(job)

    async def _reconcile_batch_files(self) -> None:
        """A kill -9 can come between a job's last change and its batch's manifest refresh: every
        batch changed lately whose manifest is older than its latest change is rewritten."""
        changed = await self.store.recently_changed_batches(self.clock.wall() - RECONCILE_WINDOW)
        for batch_id, latest in changed.items():
            batch = await self.store.get_batch(batch_id)
            if batch is None:
                continue
            manifest = Path(batch.output_dir) / MANIFEST_FILE_NAME
            sheet = Path(batch.output_dir) / CONTACT_SHEET_FILE_NAME
            try:
                stale = manifest.stat().st_mtime < latest or not sheet.exists()
            except OSError:
                stale = True
            if stale:
                self.writer.mark_dirty(batch_id)

    async def run_until_idle(self) -> StopReason:
        """Run until nothing is left to do for this engine's batches, or what is left cannot proceed."""
        await self.start()
        try:
            return await self._loop(burst=True)
        finally:
            await self.shutdown()

    async def run_forever(self, stop: asyncio.Event) -> None:
        await self.start()
        stopper = asyncio.create_task(self._stop_when(stop))
        balances = asyncio.create_task(self._watch_balances())
        reaper = asyncio.create_task(self._watch_canceled_executions())
        try:
            await self._loop(burst=False)
        finally:
            for task in (stopper, balances, reaper):
                task.cancel()

    def _probe_unreachable(self) -> None:
        """An unreachable provider is tried again after a backoff (5 s, doubling, at most 5 min): the
        pause lifts and the next start is the probe; if it fails the same way the pause returns."""
        now = self.clock.monotonic()
        for name, limiter in self.limiters.items():
            details = limiter.pause_details
            if details.get("kind") != "unreachable":
                continue
            backoff = float(details.get("backoff", UNREACHABLE_BACKOFF_MIN))
            if now - float(details.get("since", now)) >= backoff:
                log.info("%s: trying again after %.0f s (%s)", name, backoff, limiter.paused)
                limiter.resume()
                self._unreachable_backoff[name] = min(UNREACHABLE_BACKOFF_MAX, backoff * 2)
                self._emit(ProviderEvent(event="resumed", provider=name))
                self.wake()

    async def _watch_balances(self) -> None:
        """Keep the providers' balances fresh; an out-of-credits pause lifts by itself once the
        balance covers what the refused start required (checked more often while paused). An
        unreachable provider is probed again with backoff."""
        looked: dict[str, float] = {}
        while True:
            self._probe_unreachable()
            now = self.clock.monotonic()
            for name in list(self._providers):
                if not traits(name).reports_balance:
                    continue
                paused = self.limiter(name).pause_details.get("kind") == "credits"
                # Every look is a request against the provider's limits: rarely, unless paused.
                due = looked.get(name, -math.inf) + (BALANCE_REFRESH_PAUSED if paused else BALANCE_REFRESH)
                if now >= due:
                    looked[name] = now
                    await self.refresh_balance(name)
            await asyncio.sleep(BALANCE_TICK)

    async def refresh_balance(self, name: str) -> float | None:
        """Ask the provider for its balance (None if it has none to tell)."""
        if not traits(name).reports_balance:
            return None
        provider = await self._provider(name)
        if provider is None:
            return None
        try:
            balance: float | None = await provider.balance()
        except (AuthenticationFailed, Unreachable) as error:
            self._pause_for_account(name, error)
            return None
        except ProviderError as error:
            log.warning("%s: could not read the balance: %s", name, error)
            return None
        if balance is None:
            return None
        self.balances[name] = balance
        limiter = self.limiter(name)
        required = limiter.pause_details.get("required")
        if limiter.pause_details.get("kind") == "credits" and balance >= (required or 0) and balance > 0:
            log.info("%s: balance %g covers the %s credits required: resuming", name, balance, required)
            limiter.resume()
            self._emit(ProviderEvent(event="resumed", provider=name, balance=balance))
            self.wake()
        return balance

    async def estimate_credits(self, specs: Sequence[JobSpec]) -> float:
        """Known credits of making these images (jobs of unknown cost count 0)."""
        total = 0.0
        for spec in specs:
            provider = await self._provider(spec.provider)
            total += await self.budget.estimate(spec, provider) or 0.0
        return total

    def batch_changed(self, batch_id: str) -> None:
        """A batch's settings (budget, pause) changed in the store: forget the cached copy and let
        a budget-paused batch try again."""
        self._batches.pop(batch_id, None)
        self.budget.set_budget(batch_id)
        self.wake()

    async def _stop_when(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._stopping = True
        self.wake()

    async def shutdown(self) -> None:
        """Stop dispatching; in-flight jobs keep their state and resume on the next start."""
        self._stopping = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.writer.flush(force=True)
        for provider in self._providers.values():
            with contextlib.suppress(Exception):
                await provider.aclose()
        self._providers.clear()

    def wake(self) -> None:
        self._wake.set()

    def request_stop(self) -> None:
        """Stop dispatching soon (signal handlers call this); in-flight jobs resume on the next start."""
        self._stopping = True
        self.wake()

    async def stop_canceled(self, job_ids: Sequence[int]) -> list[int]:
        """Jobs just recorded as canceled: stop their tasks at once, then give back what a start
        that never went out had reserved. An execution that exists (or may) keeps its reservation:
        `_watch_canceled_executions` asks the provider until it says the execution ended. Returns
        the ids of the jobs that were stopped in flight."""
        running = {job_id: self._tasks.get(job_id) for job_id in job_ids}
        stopping = {job_id: task for job_id, task in running.items() if task is not None and not task.done()}
        for task in stopping.values():
            task.cancel()
        if stopping:
            await asyncio.gather(*stopping.values(), return_exceptions=True)
        for job_id in job_ids:
            job = await self.store.get_job(job_id)
            if job is None:
                continue
            if job.reserved is not None and job.execution is not Execution.MAYBE:
                await self.budget.release(job_id)
            elif job.execution is Execution.MAYBE and job.handle is not None:
                await self._cancel_remotely(job)
        self.wake()
        return sorted(stopping)

    async def _cancel_remotely(self, job: JobRow) -> None:
        """Stop the paid work itself where the provider's API can; the reservation stays until the
        provider says the execution ended (a cancel does not promise no charge)."""
        if job.handle is None or not traits(job.provider).remote_cancel:
            return
        provider = await self._provider(job.provider)
        if provider is None:
            return
        try:
            asked = await provider.cancel(job.handle)
        except (ProviderError, ProviderPaused) as error:
            log.warning("job %s: could not cancel execution %s: %s", job.id, job.remote_id, error)
            return
        await self.store.add_attempt(
            job.id, kind="cancel", outcome="requested" if asked else "refused", remote_id=job.remote_id
        )

    async def _watch_canceled_executions(self) -> None:
        while True:
            await asyncio.sleep(REAP_PERIOD)
            try:
                await self.settle_canceled_executions()
            except Exception as error:
                if not is_disk_full(error):
                    log.exception("could not look at canceled executions")

    async def settle_canceled_executions(self) -> int:
        """Canceled jobs whose execution may still run and charge: ask the provider (a poll, at the
        lowest priority) whether it ended. Finished → its charge is recorded and its result kept,
        so a retry downloads it without paying again; failed → the reservation goes back. Returns
        how many were settled."""
        settled = 0
        for job in await self.store.canceled_live_executions(REAP_BATCH):
            provider = await self._provider(job.provider)
            if provider is None or job.handle is None or job.id in self._tasks:
                continue
            try:
                outcome = await provider.poll(job.handle)
            except Permanent:
                if await self.store.mark_execution_ended(job.id):
                    await self.budget.release(job.id)
                    settled += 1
                continue
            except (ProviderError, ProviderPaused) as error:
                log.info("canceled job %s: no word on execution %s: %s", job.id, job.remote_id, error)
                await self.store.touch_job(job.id)
                continue
            if isinstance(outcome, Finished):
                result = outcome.to_json() if outcome.urls and not outcome.images else None
                await self.budget.settle_finished(job, outcome.credits_used, result)
                settled += 1
            else:
                await self.store.touch_job(job.id)
        return settled

    def reload_limits(self, settings: Settings) -> dict[str, dict[str, tuple[Any, Any]]]:
        """Adopt new settings: each provider's limiter takes its new limits and windows now.

        Returns what changed, {provider: {field: (old, new)}}; limits only, never secrets. A limit
        left unset (None) keeps the limiter's current estimate."""
        self.settings = settings
        self.budget.settings = settings  # costs and credit caps are reloaded too
        changes: dict[str, dict[str, tuple[Any, Any]]] = {}
        for name, limiter in self.limiters.items():
            diff = limiter.reconfigure(settings.provider_limits(name))
            if diff:
                changes[name] = diff
        self.wake()
        return changes

    # -- providers ----------------------------------------------------------------------------

    def provider_label(self, name: str) -> str:
        return provider_label(name, self.settings)

    def limiter(self, name: str) -> ProviderLimiter:
        limiter = self.limiters.get(name)
        if limiter is None:
            limiter = ProviderLimiter(
                name,
                self.settings.provider_limits(name),
                self.clock,
                starts_count_as_requests=traits(name).starts_count_as_requests,
                dialect=traits(name).rate_limit_dialect,
            )
            self.limiters[name] = limiter
        return limiter

    async def _provider(self, name: str) -> Provider | None:
        provider = self._providers.get(name)
        if provider is not None:
            return provider
        limiter = self.limiter(name)
        # Read before anything is built: no await between the check above and storing the provider,
        # so two jobs resumed at once cannot each build one (and leak the other's connections).
        starts_today = await self.store.starts_since(name, start_of_today(self.clock.wall()))
        if name in self._providers:
            return self._providers[name]
        limiter.daily_starts = starts_today
        try:
            provider = build_provider(name, self.settings, _PriorityGate(limiter))
        except ValueError as error:
            self._pause_provider(name, f"configuration error: {error}", {"kind": "config"})
            return None
        self._providers[name] = provider
        return provider

    def _pause_provider(self, name: str, reason: str, details: dict[str, Any]) -> None:
        self.limiter(name).pause(reason, details)
        self._emit(ProviderEvent(event="paused", provider=name, reason=reason, details=details))

    def _pause_for_account(self, name: str, error: AuthenticationFailed | Unreachable) -> None:
        """A bad key or an unreachable endpoint holds the whole provider, never one job at a time."""
        if isinstance(error, AuthenticationFailed):
            details: dict[str, Any] = {"kind": "authentication"}
        else:
            backoff = self._unreachable_backoff.get(name, UNREACHABLE_BACKOFF_MIN)
            details = {"kind": "unreachable", "since": self.clock.monotonic(), "backoff": backoff}
        log.warning("%s: paused: %s", name, error.message)
        self._pause_provider(name, error.message, details)

    def requests_sent(self) -> int:
        return sum(limiter.requests_sent for limiter in self.limiters.values())

    # -- the loop -----------------------------------------------------------------------------

    async def _loop(self, *, burst: bool) -> StopReason:
        flusher = asyncio.create_task(self._flush_periodically())
        try:
            while not self._stopping:
                self._wake.clear()
                if self.storage_problem is not None:
                    if burst:
                        return StopReason("paused", self.storage_problem)
                    await self._probe_storage()
                    continue
                try:
                    await self._dispatch_round()
                except Exception as error:
                    if not is_disk_full(error):
                        raise
                    self._storage_failed(error)
                    continue
                if burst:
                    reason = await self._idle_reason()
                    if reason is not None:
                        return reason
                delay = IDLE_WAKE
                next_retry = await self.store.next_retry_at(self.batch_ids)
                if next_retry is not None:
                    delay = max(0.01, min(delay, next_retry - self.clock.wall()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
            return StopReason("stopped", "stopped before the work was finished")
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(MIN_FLUSH_PERIOD)
            if self.storage_problem is not None:
                continue
            try:
                await self.writer.flush()
            except Exception as error:
                if is_disk_full(error):
                    self._storage_failed(error)
                else:
                    log.exception("could not refresh a manifest")

    def _storage_failed(self, error: BaseException) -> None:
        """Writes fail for lack of space: hold everything (said once), probe with backoff."""
        if self.storage_problem is not None:
            return
        self.storage_problem = (
            f"disk full: {error}; nothing runs until space is freed under {self.layout.root},"
            " then work resumes by itself"
        )
        log.error("%s", self.storage_problem)
        self._emit(EngineEvent(event="paused", reason=self.storage_problem))

    async def _probe_storage(self) -> None:
        await self.clock.sleep(self._storage_backoff)
        self._storage_backoff = min(STORAGE_BACKOFF_MAX, self._storage_backoff * 2)
        try:
            await self.store.probe_write()
            await asyncio.to_thread(probe_free_space, self.layout.root)
        except Exception as error:
            if not is_disk_full(error):
                raise
            return
        log.info("disk space is back: resuming")
        self.storage_problem = None
        self._emit(EngineEvent(event="resumed"))
        await self._adopt_in_flight()

    async def _dispatch_round(self) -> None:
        await self.store.promote_due_retries(self.clock.wall())
        if self.global_paused is not None:
            return
        for name in sorted(await self.store.queued_providers(self.batch_ids)):
            if await self._provider(name) is None:
                continue
            limiter = self.limiter(name)
            if not limiter.has_capacity() or limiter.blocked_for() > 0 or self.budget.provider_block(name):
                continue
            free = limiter.limits.max_in_flight - limiter.in_flight
            if not limiter.answered:
                # Until the provider has answered once, one job at a time: a wrong key or a dead
                # endpoint then costs one request, not one per slot.
                free = min(free, 1 - limiter.in_flight)
            candidates = await self.store.ready_jobs(
                name,
                free + len(self._keys_in_flight),
                self.batch_ids,
                exclude_batch_ids=list(self.budget.paused_batches),
            )
            for job in candidates:
                if free <= 0:
                    break
                if job.id in self._tasks:
                    continue
                batch = await self._batch(job.batch_id)
                if batch.cache_enabled and job.cache_key in self._keys_in_flight:
                    continue  # the same image is being made: wait, then take it from the cache
                self._spawn(job)
                free -= 1

    async def _idle_reason(self) -> StopReason | None:
        if self._tasks:
            return None
        counts = await self.store.counts(self.batch_ids)
        if not any(counts[s] for s in ("queued", "retrying", "submitting", "running")):
            return StopReason("done", "all jobs finished", {"counts": counts})
        if counts["retrying"] or counts["submitting"] or counts["running"]:
            return None
        if self.global_paused is not None:
            return StopReason("paused", f"paused: {self.global_paused}", {"counts": counts})
        reasons: list[str] = []
        details: dict[str, Any] = {"counts": counts}
        for name in sorted(await self.store.queued_providers(self.batch_ids)):
            limiter = self.limiter(name)
            if limiter.blocked_for() > 0:
                return None  # a 429 wait: it ends by itself
            snapshot = limiter.snapshot()
            block = self.budget.provider_block(name)
            if block:
                reasons.append(f"{name}: {block}")
            if snapshot.paused:
                reasons.append(f"{name}: {snapshot.paused}")
                details.setdefault("providers", {})[name] = {
                    "paused": snapshot.paused,
                    **limiter.pause_details,
                }
        paused_batches = await self.store.paused_batch_ids()
        scope = set(self.batch_ids) if self.batch_ids is not None else paused_batches
        stuck_batches = sorted(paused_batches & scope)
        if stuck_batches:
            reasons.append("paused batches: " + ", ".join(stuck_batches))
        for batch_id, why in sorted(self.budget.paused_batches.items()):
            if self.batch_ids is None or batch_id in self.batch_ids:
                reasons.append(f"batch {batch_id}: {why}")
        if reasons:
            return StopReason("paused", "; ".join(reasons), details)
        return None

    async def _batch(self, batch_id: str) -> BatchRow:
        batch = self._batches.get(batch_id)
        if batch is None:
            found = await self.store.get_batch(batch_id)
            if found is None:
                raise LookupError(f"job refers to unknown batch {batch_id}")
            batch = self._batches[batch_id] = found
        return batch

    def _spawn(self, job: JobRow) -> None:
        limiter = self.limiter(job.provider)
        limiter.in_flight += 1  # reserved now, so one dispatch round cannot overfill the provider
        self._keys_in_flight.add(job.cache_key)
        task = asyncio.create_task(self._run_job(job), name=f"job-{job.id}")
        self._tasks[job.id] = task

    # -- one job ------------------------------------------------------------------------------

    async def _run_job(self, job: JobRow) -> None:
        limiter = self.limiter(job.provider)
        try:
            await self._drive(job, limiter)
            self._storage_backoff = STORAGE_BACKOFF_MIN
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if is_disk_full(error):
                # Nothing can be recorded now: the job stays as the store has it, and is resumed
                # when a probe write succeeds. Retrying it at once would only spin.
                self._storage_failed(error)
                return
            # A bug must not kill the engine or lose the job: record it and retry later.
            log.exception("job %s: unexpected error", job.id)
            try:
                await self._retry_or_fail(job, limiter, Transient("internal error in wfbatch (see the log)"))
            except Exception as recording:
                if is_disk_full(recording):
                    self._storage_failed(recording)
                else:
                    log.exception("job %s: could not record the error", job.id)
        finally:
            limiter.in_flight -= 1
            self._keys_in_flight.discard(job.cache_key)
            self._tasks.pop(job.id, None)
            self.wake()

    async def _drive(self, job: JobRow, limiter: ProviderLimiter) -> None:
        batch = await self._batch(job.batch_id)
        provider = await self._provider(job.provider)
        if provider is None:
            return
        # Only a job that starts a new execution can have had its start refused outright (429,
        # 402, a paused provider): one resumed or re-sent may have an execution that charges.
        fresh = job.state is JobState.QUEUED and job.execution is Execution.NONE
        if job.state is JobState.QUEUED:
            if fresh and batch.cache_enabled and await self._serve_from_cache(job, batch):
                return
            admission = await self.budget.admit(job, batch, provider)
            if admission.refusal is not None:
                self._emit(
                    BatchEvent(
                        event="held", batch_id=batch.id, reason=admission.refusal, provider=job.provider,
                    )
                )
                return  # stays queued until the cap is raised (or a new day for daily caps)
            started = self.clock.wall()
            execution = Execution.MAYBE if fresh else job.execution
            if not await self.store.transition(
                job.id,
                [JobState.QUEUED],
                JobState.SUBMITTING,
                attempts=job.attempts + 1,
                started_at=job.started_at or started,
                execution=execution,
            ):
                if fresh:
                    await self.budget.release(job.id)
                return  # canceled or changed meanwhile
            job = replace(
                job,
                state=JobState.SUBMITTING,
                attempts=job.attempts + 1,
                reserved=admission.reserved,
                execution=execution,
            )
            self._emit_job(job)
        if not fresh and job.execution is Execution.MAYBE and job.remote_id is None and not job.result:
            await self._mark_resend(job)
        try:
            finished = await self._execute(job, provider, limiter)
            if finished is None:
                return  # canceled while the start was on the wire; the cancel already recorded it
            if job.execution is not Execution.FINISHED:
                # Paid for now: the charge, and what a crash before the image is written must find
                # again (the URLs, or the paid bytes themselves), are recorded first.
                result = await self._result_to_keep(job, finished)
                settling = self.budget.settle_finished(job, finished.credits_used, result)
                credits = await asyncio.shield(settling)
                job = replace(job, execution=Execution.FINISHED, credits=credits, reserved=None)
            images = await provider.download(finished)
            if not images:
                raise Transient("the provider finished without an image", request_id=finished.request_id)
            await self._complete(job, batch, images[0], finished=finished, cache_hit=False)
        except ProviderPaused as paused:
            await self._requeue(job, f"provider paused: {paused.reason}", refused=fresh)
        except RateLimited as error:
            wait = limiter.on_rate_limited(error.retry_after, error.message)
            self._emit(
                ProviderEvent(event="blocked", provider=job.provider, blocked_for=wait, reason=error.message)
            )
            await self._record_error(job, "start", error)
            await self._requeue(job, f"rate limited; provider waits {wait:.0f} s", refused=fresh)
        except (AuthenticationFailed, Unreachable) as error:
            # About the account, not the prompt: every job stays queued, the provider pauses with the
            # reason (an unreachable one is probed again with backoff in the daemon).
            self._pause_for_account(job.provider, error)
            await self._record_error(job, "start", error)
            await self._requeue(job, error.message, refused=fresh)
        except OutOfCredits as error:
            figures = {"required": error.required, "available": error.available, "breakdown": error.breakdown}
            reason = _credits_reason(error)
            self._pause_provider(job.provider, reason, {"kind": "credits", **figures})
            await self._record_error(job, "start", error)
            await self._requeue(job, reason, refused=fresh)
        except Permanent as error:
            await self._record_error(job, "job", error)
            await self._fail(job, error, ended=True)
        except (Transient, ImageDecodeError, OSError) as error:
            if is_disk_full(error):
                raise  # not the job's fault: the engine holds everything until there is room
            transient = (
                error if isinstance(error, Transient) else Transient(f"{type(error).__name__}: {error}")
            )
            await self._record_error(job, "job", transient)
            await self._retry_or_fail(job, limiter, transient)

    async def _result_to_keep(self, job: JobRow, finished: Finished) -> dict[str, Any] | None:
        """What must survive a crash before the image is written: the URLs to download again, or —
        from a synchronous provider, whose bytes exist only in its answer — the bytes themselves,
        written to cache/ before anything else, so a crash never pays for them twice."""
        if finished.images:
            image = finished.images[0]
            sha256 = await self.cache.put(job.cache_key, image)
            return {**finished.to_json(), "paid_image": {"sha256": sha256, "media_type": image.media_type}}
        return finished.to_json() if finished.urls else None

    async def _finished_from_result(self, result: dict[str, Any]) -> Finished:
        finished = Finished.from_json(result)
        paid = result.get("paid_image")
        if isinstance(paid, dict):
            image = await self.cache.read(str(paid.get("sha256")), str(paid.get("media_type")))
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
        await self.store.update_job(job.id, possible_duplicate_charge=why)

    async def _execute(self, job: JobRow, provider: Provider, limiter: ProviderLimiter) -> Finished | None:
        """Submit (or resume) the job's remote execution until it has finished; None if the job was
        canceled meanwhile."""
        if job.result:
            return await self._finished_from_result(job.result)
        if job.remote_id is None:
            key = idempotency_key(job.uid, job.generation)
            outcome = await provider.submit(job.spec, key)
            # Shielded: a shutdown arriving now must not lose the remote id the provider just gave.
            moved = await asyncio.shield(self._record_start(job, outcome))
            self.wake()  # the provider answered: slots held back until it had may be filled now
            if isinstance(outcome, Finished):
                return outcome
            if not moved:
                return None
            job = replace(job, state=JobState.RUNNING, remote_id=outcome.remote_id, handle=outcome.handle)
            self._emit_job(job)
        elif job.state is not JobState.RUNNING:
            await self.store.transition(job.id, [job.state], JobState.RUNNING)
            job = replace(job, state=JobState.RUNNING)
        assert job.remote_id is not None
        return await self._poll_until_finished(job, provider, limiter)

    async def _record_start(self, job: JobRow, outcome: Submitted | Finished) -> bool:
        await self.store.add_attempt(
            job.id,
            kind="start",
            outcome="accepted",
            http_status=outcome.http_status,
            request_id=outcome.request_id,
            remote_id=outcome.remote_id,
        )
        if isinstance(outcome, Finished):
            return True
        ids = {"remote_id": outcome.remote_id, "handle": outcome.handle}
        if await self.store.transition(job.id, [JobState.SUBMITTING], JobState.RUNNING, **ids):
            return True
        # Canceled while the start was on the wire: the execution exists all the same, and its id
        # is what lets its charge be settled (and a retry resume it instead of paying again).
        await self.store.update_job(job.id, **ids)
        return False

    async def _poll_until_finished(
        self, job: JobRow, provider: Provider, limiter: ProviderLimiter
    ) -> Finished:
        limits = limiter.limits
        remote_id, handle = job.remote_id, job.handle
        if remote_id is None or handle is None:
            raise Permanent(f"job {job.id} has no stored poll handle for its execution {remote_id}")
        started = self.clock.monotonic()
        delay = max(limits.poll_initial, self._expected_latency(job.provider) * 0.75)
        failures = 0
        while True:
            await self.clock.sleep(delay)
            running_for = self.clock.monotonic() - started
            if running_for > limits.max_run_seconds:
                # A slot held forever by an execution that never ends would stall the batch. The try
                # fails; the remote id is kept, so a retry polls the same (maybe paid) execution again.
                raise Transient(
                    f"execution {remote_id} still not finished after {running_for:.0f} s"
                    f" (max_run_seconds = {limits.max_run_seconds:g})"
                )
            poll_priority.set(running_for)
            try:
                result = await provider.poll(handle)
            except RateLimited as error:
                wait = limiter.on_rate_limited(error.retry_after, error.message)
                await self._record_error(job, "poll", error)
                delay = min(wait, limits.poll_max)
                continue
            except Transient as error:
                failures += 1
                await self._record_error(job, "poll", error)
                if failures >= limits.max_attempts:
                    raise
                delay = min(limits.poll_max, delay * limits.poll_factor)
                continue
            if isinstance(result, Finished):
                self._latencies.setdefault(job.provider, deque(maxlen=50)).append(
                    self.clock.monotonic() - started
                )
                await self.store.add_attempt(
                    job.id,
                    kind="poll",
                    outcome="finished",
                    http_status=result.http_status,
                    request_id=result.request_id,
                    remote_id=remote_id,
                )
                return result
            delay = min(limits.poll_max, delay * limits.poll_factor)

    def _expected_latency(self, provider: str) -> float:
        """Median time to finish of recent executions: no point polling much before it."""
        samples = self._latencies.get(provider)
        if not samples or len(samples) < 3:
            return 0.0
        return statistics.median(samples)

    async def _serve_from_cache(self, job: JobRow, batch: BatchRow) -> bool:
        image = await self.cache.get(job.cache_key)
        if image is None:
            return False
        self.limiter(job.provider).in_flight -= 1  # a cache hit is no remote execution
        try:
            await self._complete(job, batch, image, finished=None, cache_hit=True)
        finally:
            self.limiter(job.provider).in_flight += 1
        return True

    async def _complete(
        self, job: JobRow, batch: BatchRow, image: Image, *, finished: Finished | None, cache_hit: bool
    ) -> None:
        relative = await self.writer.write_image(batch, job, image)
        if not cache_hit:
            await self.cache.put(job.cache_key, image)
        done = await self.store.transition(
            job.id,
            [JobState.QUEUED, JobState.SUBMITTING, JobState.RUNNING],
            JobState.DONE,
            file=relative,
            cache_hit=cache_hit,
            credits=0.0 if cache_hit else job.credits,
            result=finished.to_json() if finished else None,
            finished_at=self.clock.wall(),
            error_class=None,
            error_status=None,
            error_message=None,
            error_request_id=None,
        )
        if done:
            self._emit_job(replace(job, state=JobState.DONE, file=relative, cache_hit=cache_hit))
        self.writer.mark_dirty(batch.id)

    async def _record_error(self, job: JobRow, kind: str, error: ProviderError) -> None:
        await self.store.add_attempt(
            job.id,
            kind=kind,
            outcome=error.error_class.value,
            http_status=error.status,
            message=error.message,
            request_id=error.request_id,
        )
        await self.store.update_job(
            job.id,
            error_class=error.error_class,
            error_status=error.status,
            error_message=error.message,
            error_request_id=error.request_id,
        )

    async def _requeue(self, job: JobRow, why: str, *, refused: bool) -> None:
        """Back to queued without using up an attempt (429, 402, paused provider). A `refused` new
        start created nothing: its reservation goes back. Anything else keeps its execution and
        reservation: a job resumed or re-sent may have an execution that charges."""
        source = [JobState.SUBMITTING, JobState.RUNNING]
        fields: dict[str, Any] = {}
        current = await self.store.get_job(job.id)
        if refused and current is not None and current.remote_id is None and current.result is None:
            await self.budget.release(job.id)
            fields["execution"] = Execution.NONE
        attempts = max(0, job.attempts - 1)
        if await self.store.transition(job.id, source, JobState.QUEUED, attempts=attempts, **fields):
            log.info("job %s back in the queue: %s", job.id, why)
            self._emit_job(replace(job, state=JobState.QUEUED))
            self.writer.mark_dirty(job.batch_id)

    async def _retry_or_fail(self, job: JobRow, limiter: ProviderLimiter, error: ProviderError) -> None:
        current = await self.store.get_job(job.id)
        if current is not None and current.execution in (Execution.NONE, Execution.ENDED):
            # No execution exists, so none can charge: free the reservation. One that exists or may
            # (a lost answer to the start, a poll or download to retry) keeps it: it may charge.
            await self.budget.release(job.id)
        if job.attempts >= limiter.limits.max_attempts:
            await self._fail(job, error, note=f"gave up after {job.attempts} attempts")
            return
        delay = retry_delay(
            job.attempts, limiter.limits.backoff_initial, limiter.limits.backoff_max, self._rng
        )
        source = [JobState.QUEUED, JobState.SUBMITTING, JobState.RUNNING]
        if await self.store.transition(
            job.id,
            source,
            JobState.RETRYING,
            next_attempt_at=self.clock.wall() + delay,
            error_class=ErrorClass.TRANSIENT,
            error_status=error.status,
            error_message=error.message,
            error_request_id=error.request_id,
        ):
            self._emit_job(replace(job, state=JobState.RETRYING))
            self.writer.mark_dirty(job.batch_id)

    async def _fail(
        self, job: JobRow, error: ProviderError, note: str | None = None, *, ended: bool = False
    ) -> None:
        """Fail the job. `ended`: the provider said its execution ended without an image (a FAILED
        execution, a refused start) — not charged (Wireflow's rule), so its reservation goes back
        and a hand retry may use a new key. Otherwise (attempts used up on an execution that may
        exist) the reservation stays until the provider says more, and a retry resumes it."""
        message = f"{error.message} ({note})" if note else error.message
        fields: dict[str, Any] = {}
        current = await self.store.get_job(job.id)
        if current is not None and (
            current.execution is Execution.NONE or (ended and current.execution is Execution.MAYBE)
        ):
            await self.budget.release(job.id)
            fields["execution"] = Execution.ENDED if ended else Execution.NONE
        source = [JobState.QUEUED, JobState.SUBMITTING, JobState.RUNNING]
        if await self.store.transition(
            job.id,
            source,
            JobState.FAILED,
            **fields,
            finished_at=self.clock.wall(),
            error_class=error.error_class,
            error_status=error.status,
            error_message=message,
            error_request_id=error.request_id,
        ):
            self._emit_job(replace(job, state=JobState.FAILED, error_message=message))
            self.writer.mark_dirty(job.batch_id)

    def _emit_job(self, job: JobRow) -> None:
        self._emit(JobEvent(id=job.id, batch_id=job.batch_id, state=job.state))


MIN_FLUSH_PERIOD = 1.0
RECONCILE_WINDOW = 7 * 24 * 3600.0
REAP_PERIOD = 30.0
REAP_BATCH = 20
UNREACHABLE_BACKOFF_MIN = 5.0
UNREACHABLE_BACKOFF_MAX = 300.0
STORAGE_BACKOFF_MIN = 1.0
STORAGE_BACKOFF_MAX = 30.0
BALANCE_REFRESH = 600.0
BALANCE_REFRESH_PAUSED = 15.0
BALANCE_TICK = 2.0


def _credits_reason(error: OutOfCredits) -> str:
    if error.required is not None and error.available is not None:
        return f"out of credits: {error.required:g} required, {error.available:g} available"
    return f"out of credits: {error.message}"
