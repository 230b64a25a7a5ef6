"""The engine: picks ready jobs under each provider's limits (batches take turns by priority and
weight, `fairshare`; inside a batch, its entries' priority, then age) and runs each one
(`runner.JobRunner`), recording how each run ended in one transaction.

Every state change is committed before the network call that depends on it, so a crash at any point
leaves a job that the next start can finish: `submitting` jobs are re-sent with the same
idempotency key, `running` jobs resume polling (or downloading) their stored remote execution.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from wfbatch.core.models import JobSpec
from wfbatch.core.states import JobState
from wfbatch.core.tasks import cancel_and_wait, wait_event
from wfbatch.engine.clock import Clock, SystemClock
from wfbatch.engine.events import EventSink, discard
from wfbatch.engine.features.finals import Finals
from wfbatch.engine.features.remote_batches import RemoteBatches
from wfbatch.engine.loop import accounts
from wfbatch.engine.loop.budget import Budget, cost_key
from wfbatch.engine.loop.cache import ImageCache
from wfbatch.engine.loop.canceled import CanceledExecutions
from wfbatch.engine.loop.fairshare import FairShare
from wfbatch.engine.loop.fleet import Fleet, SoloFleet
from wfbatch.engine.loop.holds import Holds
from wfbatch.engine.loop.idle import StopReason, idle_reason
from wfbatch.engine.loop.limiter import Slot
from wfbatch.engine.loop.pool import ProviderPool
from wfbatch.engine.loop.progress import ProgressBoard
from wfbatch.engine.loop.runner import JobRunner, JobServices
from wfbatch.engine.loop.storage import StorageHealth, is_disk_full
from wfbatch.engine.loop.windows import Windows
from wfbatch.engine.loop.writer import OutputWriter
from wfbatch.engine.outbox.background import Background
from wfbatch.engine.outbox.delivery import DeliveryWorker
from wfbatch.engine.outbox.notify import Notifier
from wfbatch.home import HomeLayout
from wfbatch.providers.errors import Transient
from wfbatch.settings import Settings
from wfbatch.store import BatchRow, JobRow, OutcomeRecord, StoreApi

log = logging.getLogger("wfbatch.engine")

IDLE_WAKE = 1.0
MIN_FLUSH_PERIOD = 1.0
RECONCILE_WINDOW = 7 * 24 * 3600.0


class Engine:
    def __init__(
        self,
        store: StoreApi,
        settings: Settings,
        layout: HomeLayout,
        *,
        clock: Clock | None = None,
        events: EventSink = discard,
        batch_ids: Sequence[str] | None = None,
        rng: random.Random | None = None,
        fleet: Fleet | None = None,
    ) -> None:
        self.store = store
        self.fleet: Fleet = fleet or SoloFleet()
        self._adopt_due = False
        """Accounts were taken over from a daemon that vanished: adopt their jobs in flight."""
        self._next_leak_check = 0.0
        self.settings = settings
        self.layout = layout
        self.clock = clock or SystemClock()
        self._emit = events
        self.batch_ids = list(batch_ids) if batch_ids is not None else None
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._keys_in_flight: set[str] = set()
        self._in_flight_by_cost: Counter[tuple[str, str | None, str | None]] = Counter()
        """Jobs in flight by what their cost is known by (see `_dispatch_round`)."""
        self._batches: dict[str, BatchRow] = {}
        self.fair = FairShare()
        self._background: set[asyncio.Task[None]] = set()
        self.pool = ProviderPool(store, settings, self.clock, events, self.wake)
        self.budget = Budget(store, settings, self.clock)
        self.storage = StorageHealth(store, layout.root, self.clock, events)
        self.windows = Windows(lambda: self.settings, self.pool, self.clock, events)
        self.holds = Holds(store, self.pool, self.budget, self.storage, self.windows)
        self.cache = ImageCache(layout.cache, store)
        self.writer = OutputWriter(
            store,
            self.pool.label,
            writes=self.fleet.writes_manifest,
            changed_elsewhere=self.fleet.manifests_changed,
        )
        self.canceled = CanceledExecutions(store, self.budget, self.pool)
        self.progress = ProgressBoard(events)
        self.finals = Finals(store, settings, self.writer, emit=events, wake=self.wake, cache=self.cache)
        # Uploads and notifications: workers of their own, fed through the store.
        self.delivery = DeliveryWorker(store, lambda: self.settings, self.writer, self.clock)
        self.notifier = Notifier(store, lambda: self.settings, self.holds, self.clock)
        self.writer.finished_hooks += [self.delivery.batch_finished, self.notifier.batch_finished]
        self.budget.reserved_hooks.append(self.notifier.budget_reserved)
        services = JobServices(
            store=store,
            budget=self.budget,
            cache=self.cache,
            writer=self.writer,
            pool=self.pool,
            clock=self.clock,
            rng=rng or random.Random(),
            emit=events,
            wake=self.wake,
            batch=self._batch,
            progress=self.progress,
            claim=self.fleet.claim_fields,
        )
        self.runner = JobRunner(services)
        self.background = Background(
            pool=self.pool,
            storage=self.storage,
            delivery=self.delivery,
            notifier=self.notifier,
            clock=self.clock,
            settle_canceled=self.settle_canceled_executions,
        )
        # Jobs in batch mode go through their provider's batch API, grouped; the one-job path
        # above never sees them (see engine/remote_batches.py).
        self.remote = RemoteBatches(
            services, self.runner, self._record, lambda: self.settings, lambda: self.batch_ids
        )

    # -- what the daemon and `run` ask -------------------------------------------------------

    async def estimate_credits(self, specs: Sequence[JobSpec]) -> float:
        """Known credits of making these images (jobs of unknown cost count 0)."""
        total = 0.0
        for spec in specs:
            total += await self.budget.estimate(spec, await self.pool.get(spec.provider)) or 0.0
        return total

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the user's pauses and resume what a previous process left in flight."""
        await self.holds.load()
        await self._release_leaked()
        await self.writer.reconcile(self.clock.wall() - RECONCILE_WINDOW)
        await self.fleet.start(self._accounts_taken, self._wanted_accounts)
        await self._adopt_in_flight()
        # A held delivery is tried once more per start: the bucket may exist by now.
        await self.store.outbox.release_held()
        await self.remote.resume()

    async def run_until_idle(self) -> StopReason:
        """Run until nothing is left to do for this engine's batches, or what is left cannot proceed;
        then give pending uploads and notifications a bounded time to go out."""
        await self.start()
        self.background.start(watch_providers=False)
        try:
            reason = await self._loop(burst=True)
            await self.writer.flush(force=True)  # finishes batches: their manifests go up now
            await self.background.drain(self.settings.delivery.wait_at_exit)
            return reason
        finally:
            await self.background.stop()
            await self.shutdown()

    async def run_forever(self, stop: asyncio.Event) -> None:
        await self.start()
        stopper = asyncio.create_task(self._stop_when(stop))
        self.background.start(watch_providers=True)
        try:
            await self._loop(burst=False)
        finally:
            stopper.cancel()
            await self.background.stop()

    async def shutdown(self) -> None:
        """Stop dispatching; in-flight jobs keep their state and resume on the next start."""
        self._stopping = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.remote.shutdown()
        await self.progress.aclose()
        await self.writer.flush(force=True)
        await self.pool.aclose()
        await self.fleet.stop()

    def wake(self) -> None:
        self._wake.set()

    def include(self, batch_id: str) -> None:
        """Run this batch too, when this engine runs only some (`wfbatch run`'s: its batches are
        accepted through the engine's control); one that runs every batch runs it anyway."""
        if self.batch_ids is not None and batch_id not in self.batch_ids:
            self.batch_ids.append(batch_id)

    def request_stop(self) -> None:
        """Stop dispatching soon (signal handlers call this); in-flight jobs resume on the next start."""
        self._stopping = True
        self.wake()

    async def _stop_when(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.request_stop()

    def reload_limits(self, settings: Settings) -> dict[str, dict[str, tuple[Any, Any]]]:
        """Adopt new settings: each provider's limiter takes its new limits and windows now, costs
        and credit caps too. Returns what changed, {provider: {field: (old, new)}}; never secrets."""
        self.settings = settings
        self.budget.settings = settings
        changes = self.pool.reload(settings)
        with contextlib.suppress(RuntimeError):  # no running loop: nothing is held in this process
            task = asyncio.get_running_loop().create_task(self.delivery.settings_changed())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        self.wake()
        return changes

    def batch_changed(self, batch_id: str) -> None:
        """A batch's settings (budget, pause) changed in the store: forget the cached copy and let
        a budget-held batch try again."""
        self._batches.pop(batch_id, None)
        self.budget.set_budget(batch_id)
        self.wake()

    async def stop_canceled(self, job_ids: Sequence[int]) -> list[int]:
        """Jobs just recorded as canceled: see `CanceledExecutions.stop`. Returns the ids of the
        jobs that were stopped in flight."""
        stopped = await self.canceled.stop(job_ids, self._tasks)
        await self.remote.after_cancel(job_ids)
        self.wake()
        return stopped

    async def settle_canceled_executions(self) -> int:
        return await self.canceled.settle(set(self._tasks), self.fleet.adoptable)

    async def _adopt_in_flight(self) -> None:
        """Resume jobs left in flight with no task driving them: after a crash, or writes that
        failed while the disk was full."""
        for job in await self.store.jobs.in_flight_jobs():
            if job.id in self._tasks or (self.batch_ids is not None and job.batch_id not in self.batch_ids):
                continue
            if not self.fleet.adoptable(job):
                continue  # another daemon's: it serves that account (store/fleet.py)
            log.info("resuming job %s (%s, remote id %s)", job.id, job.state, job.remote_id)
            self._spawn(job)

    async def _release_leaked(self) -> None:
        now = self.clock.wall()
        before = self.fleet.leaks_before(now)
        released = await self.budget.release_leaked(before)
        if released:
            log.info("released %d credit reservations left behind by a crash", released)
            self.budget.paused_batches.clear()  # credits came back: a batch held by its budget tries again
        if before is not None:
            # Several daemons: one that vanished between a reservation and its start leaves it
            # behind at any time, not only before this start; looked for again once it is old enough.
            self._next_leak_check = now + (now - before)

    async def _release_leaked_when_due(self) -> None:
        if self._next_leak_check and self.clock.wall() >= self._next_leak_check:
            await self._release_leaked()

    def _accounts_taken(self) -> None:
        self._adopt_due = True
        self.wake()

    async def _wanted_accounts(self) -> set[tuple[str, str]]:
        """The accounts of every provider with queued work: the ones this engine asks to serve."""
        wanted: set[tuple[str, str]] = set()
        for name in await self.store.jobs.queued_providers(self.batch_ids):
            if await self.pool.get(name) is not None:
                wanted.update((name, account.name) for account in self.pool.accounts(name))
        return wanted

    # -- the loop -----------------------------------------------------------------------------

    async def _loop(self, *, burst: bool) -> StopReason:
        flusher = asyncio.create_task(self._flush_periodically())
        try:
            while not self._stopping:
                self._wake.clear()
                if self._adopt_due and self.storage.problem is None:
                    self._adopt_due = False
                    await self._release_leaked()  # a vanished daemon's, reserved but never started
                    await self._adopt_in_flight()
                await self._release_leaked_when_due()
                if self.storage.problem is not None:
                    if burst:
                        return StopReason("paused", self.storage.problem)
                    if await self.storage.probe():
                        await self._adopt_in_flight()
                    continue
                try:
                    await self._dispatch_round()
                except Exception as error:
                    if not is_disk_full(error):
                        raise
                    self.storage.failed(error)
                    continue
                if burst:
                    reason = await self._idle_reason()
                    if reason is not None:
                        return reason
                delay = IDLE_WAKE
                next_retry = await self.store.jobs.next_retry_at(self.batch_ids)
                if next_retry is not None:
                    delay = max(0.01, min(delay, next_retry - self.clock.wall()))
                # A batch scheduled for later starts when its time comes, not up to a wake later.
                scheduled = await self.store.batches.next_not_before(self.clock.wall(), self.batch_ids)
                if scheduled is not None:
                    delay = max(0.01, min(delay, scheduled - self.clock.wall()))
                await wait_event(self._wake, delay)
            return StopReason(
                "stopped", "interrupted: the same command again resumes the rest (nothing is sent twice)"
            )
        finally:
            await cancel_and_wait(flusher)

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(MIN_FLUSH_PERIOD)
            if self.storage.problem is not None:
                continue
            try:
                await self.writer.flush()
            except Exception as error:
                if is_disk_full(error):
                    self.storage.failed(error)
                else:
                    log.exception("could not refresh a manifest")

    async def _dispatch_round(self) -> None:
        await self.store.jobs.promote_due_retries(self.clock.wall())
        if self.holds.everything() is not None:
            return
        queued = sorted(await self.store.jobs.queued_providers(self.batch_ids))
        # An account's pool reaches (or leaves, at midnight) its daily cap without an event.
        self.pool.hold_if_every_account_is()
        self.windows.observe(queued)
        await self.remote.tick(queued, self._provider_held, self.holds.budget_held_batches())
        for name in queued:
            if await self.pool.get(name) is None or self.holds.provider(name):
                continue
            # Outside its [schedule] windows an account starts nothing; what it has in flight goes on.
            # With several daemons on one database, only the accounts this daemon holds.
            choices = [
                choice for choice in accounts.startable(self.pool, name)
                if self.windows.account_open(name, choice.account) and self.fleet.holds(name, choice.account)
            ]
            free = accounts.total_free(choices)
            if free > 0:
                await self._start_on(name, choices, free)

    async def _start_on(self, name: str, choices: list[accounts.Choice], free: int) -> None:
        """Start up to `free` jobs on the provider, taking turns between its runnable batches
        (`FairShare`); inside a batch, its entries' priority, then their order."""
        pending: Counter[str] = Counter()
        runnable = await self.store.jobs.ready_batches(name, self.clock.wall(), self.batch_ids)
        turns = self.fair.round(name, runnable)
        waiting: dict[str, deque[JobRow]] = {}
        while free > 0:
            chosen = turns.next()
            if chosen is None:
                return
            queue = waiting.get(chosen.id)
            if queue is None:
                queue = waiting[chosen.id] = deque(
                    await self.store.jobs.ready_jobs(
                        name,
                        free + len(self._keys_in_flight),
                        [chosen.id],
                        exclude_batch_ids=self.holds.budget_held_batches(),
                        batch_mode=self._direct_only(name),
                    )
                )
            if not queue:
                turns.exhausted(chosen.id)
                continue
            job = queue.popleft()
            if job.id in self._tasks:
                continue
            batch = await self._batch(job.batch_id)
            if batch.cache_enabled and job.cache_key in self._keys_in_flight:
                continue  # the same image is being made: wait, then take it from the cache
            if self._in_flight_by_cost[cost_key(job.spec)] and self._unpriced_under_cap(job, batch):
                # Nothing to reserve for an unknown cost: jobs started side by side would all slip
                # under the cap. One goes first; its charge tells the cost.
                continue
            own = self.pool.account(name, job.account).name
            choice = accounts.pick(choices, job, own, pending)
            if choice is None:
                continue  # its account cannot start now (it waits for that account)
            if await self.pool.get(name, choice.account) is None:
                continue
            if not await self.fleet.claim(job):
                continue  # another daemon's to start (several daemons on one database)
            pending[choice.pool] += 1
            self._spawn(replace(job, account=choice.account))
            turns.started(chosen.id)
            free -= 1

    def _provider_held(self, name: str) -> bool:
        return bool(self.holds.provider(name))

    def _direct_only(self, name: str) -> tuple[bool, str] | None:
        """For a provider with a batch mode: this path takes only its direct-mode jobs."""
        mode = self.remote.section_mode(name)
        return None if mode is None else (False, mode)

    async def _idle_reason(self) -> StopReason | None:
        return None if self._tasks else await idle_reason(self.store, self.pool, self.holds, self.batch_ids)

    async def _batch(self, batch_id: str) -> BatchRow:
        batch = self._batches.get(batch_id)
        if batch is None:
            found = await self.store.batches.get_batch(batch_id)
            if found is None:
                raise LookupError(f"job refers to unknown batch {batch_id}")
            batch = self._batches[batch_id] = found
        return batch

    def _unpriced_under_cap(self, job: JobRow, batch: BatchRow) -> bool:
        return self.budget.capped(batch, job.provider) and not self.budget.cost_known(job.spec)

    def _spawn(self, job: JobRow) -> None:
        slot = Slot(self.pool.account_limiter(job.provider, job.account))
        self._keys_in_flight.add(job.cache_key)
        self._in_flight_by_cost[cost_key(job.spec)] += 1
        task = asyncio.create_task(self._run_job(job), name=f"job-{job.id}")
        self._tasks[job.id] = task
        task.add_done_callback(slot.release)

    # -- one job ------------------------------------------------------------------------------

    async def _run_job(self, job: JobRow) -> None:
        try:
            outcome = await self.runner.run(job)
            if outcome is not None:
                # Shielded: a shutdown arriving now cannot leave the outcome half recorded.
                await asyncio.shield(self._record(job, outcome))
            self.storage.worked()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if is_disk_full(error):
                # Nothing can be recorded now: the job stays as the store has it, and is resumed
                # when a probe write succeeds. Retrying it at once would only spin.
                self.storage.failed(error)
                return
            # A bug must not kill the engine or lose the job: record it and retry later.
            log.exception("job %s: unexpected error", job.id)
            limiter = self.pool.account_limiter(job.provider, job.account)
            failure = self.runner.retry_or_fail(
                job, limiter, Transient("internal error in wfbatch (see the log)")
            )
            try:
                await asyncio.shield(self._record(job, failure))
            except Exception as recording:
                if is_disk_full(recording):
                    self.storage.failed(recording)
                else:
                    log.exception("job %s: could not record the error", job.id)
        finally:
            try:
                # While the job is still this engine's task, so that no new run of it here races
                # the release. A claim left behind (an error) only waits for this daemon.
                with contextlib.suppress(Exception):
                    await self.fleet.unclaim(job)
            finally:
                self._keys_in_flight.discard(job.cache_key)
                self._in_flight_by_cost[cost_key(job.spec)] -= 1
                self._tasks.pop(job.id, None)
                self.wake()

    async def _record(self, job: JobRow, outcome: OutcomeRecord) -> None:
        """How this run of the job ended, in one transaction; then told."""
        # Recorded with the move, so a crash cannot lose them: the upload, the failure notice.
        if outcome.target is JobState.DONE and self.delivery.uploads_as_done(await self._batch(job.batch_id)):
            outcome = replace(outcome, deliver=True)
        if outcome.target is JobState.FAILED:
            notice = self.notifier.failed_notice(job, await self._batch(job.batch_id), outcome.fields)
            outcome = replace(outcome, notice=notice)
        moved = await self.store.jobs.record_outcome(job.id, outcome)
        if moved and outcome.target is not None:
            if outcome.target in (JobState.DONE, JobState.FAILED):
                self.pool.spent_on(job.provider)
            self.runner.emit_job(job, outcome.target)
            self.writer.mark_dirty(job.batch_id)
            if outcome.target is JobState.DONE and job.stage is not None:
                await self.finals.finished(job, await self._batch(job.batch_id))
            if outcome.deliver:
                self.delivery.wake()
            if outcome.notice is not None:
                self.notifier.wake()


__all__ = ["Engine", "StopReason"]
