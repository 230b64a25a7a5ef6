"""What users can ask of a running engine: accept prompts, retry, cancel, edit, pause/resume, review.

The daemon's routes and its inbox watcher are thin shells around `Control`: every rule (which
states a command may touch, what is persisted, what the engine is told) lives here, next to the
engine it steers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, overload

from wfbatch.core.hashing import batch_identity, cache_key
from wfbatch.core.models import JobSpec
from wfbatch.core.names import quote_name
from wfbatch.core.parsing import LineError, PromptFileError, format_of_name
from wfbatch.core.states import UNFINISHED_STATES, Execution, JobState, ReviewStatus
from wfbatch.core.suggest import did_you_mean
from wfbatch.core.words import plural
from wfbatch.engine.events import EventSink, discard
from wfbatch.engine.intake.acceptance import CheckedPrompts, balance_warnings, check_prompts
from wfbatch.engine.intake.ingest import ingest
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.outputs import UnsafePathError, move_for_review
from wfbatch.protocol import BatchEvent, CommandResult, EngineEvent, JobEvent, ProviderEvent
from wfbatch.providers.registry import KNOWN_PROVIDERS
from wfbatch.providers.validation import spec_problems
from wfbatch.store import CLEARED_ERROR, BatchRow, JobRow, Reuse, spec_to_json

log = logging.getLogger("wfbatch.control")

USER_PAUSE_REASON = "paused by the user"
MAX_IDS_LISTED = 20
_DECIDE_TRIES = 3


class CommandError(Exception):
    """A command cannot be carried out as asked (a job in the wrong state, a missing option)."""


class NotFound(CommandError):
    """A command names a job, batch or provider that does not exist."""


@dataclass(frozen=True)
class Accepted:
    """The prompts became a batch (`batch` is None for a dry run: they would have)."""

    batch: BatchRow | None
    jobs: int
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Duplicate:
    """The exact content of an already accepted batch: nothing was enqueued."""

    of: BatchRow


@dataclass(frozen=True)
class Resumed:
    """An unfinished batch of the same content goes on instead (`wfbatch run` of the same file
    again), with the budget this time's file or flag gives it: nothing new was enqueued."""

    batch: BatchRow


@dataclass(frozen=True)
class Refused:
    """The prompts failed validation: nothing was enqueued. `report` names every bad line."""

    errors: list[LineError]
    report: str


Acceptance = Accepted | Duplicate | Refused


def _ids(ids: Sequence[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:MAX_IDS_LISTED])
    return shown + (f" and {len(ids) - MAX_IDS_LISTED} more" if len(ids) > MAX_IDS_LISTED else "")


class Control:
    def __init__(self, engine: Engine, *, events: EventSink = discard) -> None:
        self.engine = engine
        self.store = engine.store
        self._emit = events

    # -- prompts in ---------------------------------------------------------------------------

    def identity(self, raw: bytes, source_name: str) -> str:
        """The content identity `accept(raw, source_name)` gives its batch (see `batch_identity`)."""
        return batch_identity(raw, format_of_name(source_name), self.engine.settings.provider)

    async def accept(
        self,
        raw: bytes,
        source_name: str,
        *,
        fmt: str | None = None,
        provider: str | None = None,
        budget: float | None = None,
        not_before: float | None = None,
        dry_run: bool = False,
        skip_duplicates: bool | None = None,
        identity: str | None = None,
        prompt_dir: Path | None = None,
    ) -> Acceptance:
        """Validate prompts exactly as a dropped file is validated, then enqueue them as one batch
        (`enqueue`). `identity`: `self.identity(raw, source_name)`, when the caller hashed the file
        already. `prompt_dir`: the file's own folder, where its input pictures may be (`submit`
        sends it; a dropped file has none: only the HOME's `inputs/`)."""
        settings = self.engine.settings
        try:
            checked = await asyncio.to_thread(
                check_prompts,
                raw,
                source_name,
                settings,
                fmt=fmt,
                provider=provider,
                budget=budget,
                not_before=not_before,
                prompt_dir=prompt_dir,
            )
        except PromptFileError as error:
            return Refused(error.errors, error.report())
        if skip_duplicates is None:
            skip_duplicates = settings.inbox.skip_duplicate_files
        warnings = await self.balance_warnings([checked])
        if dry_run:
            return Accepted(None, len(checked.expanded), warnings)
        reuse: Literal[Reuse.ANY, Reuse.NEVER] = Reuse.ANY if skip_duplicates else Reuse.NEVER
        if fmt is not None or provider is not None:
            identity = None  # read another way than the name says: not what `identity` hashed
        return await self.enqueue(checked, reuse=reuse, identity=identity, warnings=warnings)

    async def balance_warnings(self, prompts: Sequence[CheckedPrompts]) -> tuple[str, ...]:
        """Warnings for work estimated above a provider's known balance (`balance_warnings`); what
        the cache holds costs nothing, so it is left out of the estimate."""

        async def left_to_generate(specs: Sequence[JobSpec]) -> float:
            keys = await asyncio.to_thread(lambda: [cache_key(spec) for spec in specs])
            cached = await self.store.cache.cached_keys(keys)
            wanted = [spec for spec, key in zip(specs, keys, strict=True) if key not in cached]
            return await self.engine.estimate_credits(wanted)

        return await balance_warnings(prompts, self.engine.pool.balances, left_to_generate)

    @overload
    async def enqueue(
        self,
        checked: CheckedPrompts,
        *,
        reuse: Literal[Reuse.ANY, Reuse.NEVER],
        identity: str | None = None,
        warnings: tuple[str, ...] = (),
    ) -> Accepted | Duplicate: ...

    @overload
    async def enqueue(
        self,
        checked: CheckedPrompts,
        *,
        reuse: Literal[Reuse.UNFINISHED],
        identity: str | None = None,
        warnings: tuple[str, ...] = (),
    ) -> Accepted | Resumed: ...

    async def enqueue(
        self,
        checked: CheckedPrompts,
        *,
        reuse: Reuse,
        identity: str | None = None,
        warnings: tuple[str, ...] = (),
    ) -> Accepted | Duplicate | Resumed:
        """Enqueue checked prompts as one batch; or, as `reuse` allows, take the earlier batch of
        the same content instead: `Duplicate` (the inbox, `submit`), or `Resumed` for an
        unfinished one (`wfbatch run`, which checks all its files before it enqueues any)."""
        source_name = checked.parsed.source_name
        ingested = await ingest(
            self.store,
            self.engine.layout,
            checked.parsed,
            checked.raw,
            checked.default_provider,
            reuse=reuse,
            expanded=checked.expanded,
            identity=identity,
        )
        batch = ingested.batch
        if ingested.resumed and reuse is Reuse.UNFINISHED:
            return await self._resume(batch, checked.parsed.budget)
        if ingested.resumed:
            self._emit(BatchEvent(event="duplicate", batch_id=batch.id, source_name=source_name))
            return Duplicate(batch)
        jobs = plural(ingested.jobs, "job")
        log.info("batch %s (%s): %s from %s", batch.id, quote_name(batch.name), jobs, quote_name(source_name))
        self._emit(
            BatchEvent(
                event="created", batch_id=batch.id, name=batch.name, source_name=source_name,
                jobs=ingested.jobs,
            )
        )
        # The daemon that accepted a batch writes its manifest (several daemons on one database:
        # one writer; another takes over only once this one is gone).
        await self.engine.fleet.writes_manifest(batch.id)
        self.engine.include(batch.id)
        self.engine.wake()
        return Accepted(batch, ingested.jobs, warnings)

    async def _resume(self, batch: BatchRow, budget: float | None) -> Resumed:
        if budget != batch.budget:
            await self.store.batches.set_batch_budget(batch.id, budget)
            batch = replace(batch, budget=budget)
            self.engine.batch_changed(batch.id)
        log.info("batch %s (%s): resumed", batch.id, quote_name(batch.name))
        self.engine.include(batch.id)
        self.engine.wake()
        return Resumed(batch)

    # -- retry, cancel, edit ------------------------------------------------------------------

    async def retry(
        self, job_ids: Sequence[int] = (), *, failed_of_batch: str | None = None, all_failed: bool = False
    ) -> CommandResult:
        """Failed or canceled jobs back to the queue, attempts reset (a new execution is wanted)."""
        if job_ids:
            await self._require_jobs(job_ids)
            wanted = list(job_ids)
        elif failed_of_batch is not None:
            await self._require_batch(failed_of_batch)
            wanted = await self.store.jobs.job_ids(states=[JobState.FAILED], batch_id=failed_of_batch)
        elif all_failed:
            wanted = await self.store.jobs.job_ids(states=[JobState.FAILED])
        else:
            raise CommandError("say which jobs to retry: job ids, failed_of_batch, or all_failed")
        retried = await self.store.jobs.requeue_for_retry(wanted)
        await self._announce(retried, JobState.QUEUED)
        self.engine.wake()
        skipped = sorted(set(wanted) - set(retried))
        message = f"{plural(len(retried), 'job')} queued again"
        if skipped:
            message += f"; not failed or canceled, left alone: {_ids(skipped)}"
        return CommandResult(job_ids=retried, message=message)

    async def cancel(self, job_ids: Sequence[int] = (), *, batch_id: str | None = None) -> CommandResult:
        """Jobs not finished yet → canceled; one being executed is stopped at once. A remote execution
        already started may still charge: it keeps its credit reservation until the provider says
        it ended, and a retry of the job resumes it instead of paying for another."""
        if job_ids:
            await self._require_jobs(job_ids)
            wanted = list(job_ids)
        elif batch_id is not None:
            await self._require_batch(batch_id)
            wanted = await self.store.jobs.job_ids(states=sorted(UNFINISHED_STATES), batch_id=batch_id)
        else:
            raise CommandError("say which jobs to cancel: job ids or a batch id")
        canceled = await self.store.jobs.cancel_jobs(wanted)
        stopped = await self.engine.stop_canceled(canceled)
        await self._announce(canceled, JobState.CANCELED)
        skipped = sorted(set(wanted) - set(canceled))
        message = f"{plural(len(canceled), 'job')} canceled"
        if stopped:
            message += f" ({len(stopped)} stopped while in flight)"
        if skipped:
            message += f"; already finished, left alone: {_ids(skipped)}"
        return CommandResult(job_ids=canceled, message=message)

    async def edit(self, job_id: int, prompt: str) -> CommandResult:
        """Give a failed (or canceled) job a new prompt and queue it again; a new prompt is a new
        image, so it gets a new cache key and a new idempotency key."""
        job = await self.store.jobs.get_job(job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        if job.state not in (JobState.FAILED, JobState.CANCELED):
            raise CommandError(
                f"job {job_id} is {job.state.value}: only a failed or canceled job can be edited"
            )
        text = prompt.strip()
        if not text:
            raise CommandError("the new prompt is empty")
        spec = replace(job.spec, prompt=text)
        refused = spec_problems(spec)
        if refused:
            raise CommandError(f"job {job_id}: {spec.provider}: {'; '.join(refused)}")
        if job.execution is Execution.MAYBE:
            # The old execution is abandoned but may still charge: count it, never forget it.
            await self.engine.budget.ledger.assume_charged(job_id)
        moved = await self.store.jobs.transition(
            job_id,
            [JobState.FAILED, JobState.CANCELED],
            JobState.QUEUED,
            spec=spec_to_json(spec),
            prompt=text,
            cache_key=cache_key(spec),
            attempts=0,
            generation=job.generation + 1,
            next_attempt_at=None,
            remote_id=None,
            handle=None,
            result=None,
            execution=Execution.NONE,
            finished_at=None,
            **CLEARED_ERROR,
        )
        if not moved:
            raise CommandError(f"job {job_id} changed meanwhile; look again")
        await self._announce([job_id], JobState.QUEUED)
        self.engine.wake()
        return CommandResult(job_ids=[job_id], message=f"job {job_id}: prompt changed, queued again")

    # -- pause, resume ------------------------------------------------------------------------

    async def pause(self, scope: str, target: str | None = None, reason: str | None = None) -> CommandResult:
        why = reason or USER_PAUSE_REASON
        holds = self.engine.holds
        if scope == "global":
            await holds.pause_everything(why)
            self._emit(EngineEvent(event="paused", reason=why))
            return CommandResult(message=f"paused: nothing new starts ({why})")
        if scope == "provider":
            name = self._require_provider(target)
            await holds.pause_provider(name, why)
            self._emit(ProviderEvent(event="paused", provider=name, reason=why, details={"by": "user"}))
            return CommandResult(message=f"provider {name} paused ({why})")
        if scope == "batch":
            batch_id = await self._require_batch(target)
            await holds.set_batch_paused(batch_id, True)
            self.engine.batch_changed(batch_id)
            self._emit(BatchEvent(event="paused", batch_id=batch_id))
            return CommandResult(message=f"batch {batch_id} paused")
        raise CommandError(f"unknown pause scope {scope!r}")

    async def resume(self, scope: str, target: str | None = None) -> CommandResult:
        holds = self.engine.holds
        if scope == "global":
            await holds.resume_everything()
            self._emit(EngineEvent(event="resumed"))
            message = "resumed"
        elif scope == "provider":
            name = self._require_provider(target)
            was = await holds.resume_provider(name)
            self._emit(ProviderEvent(event="resumed", provider=name))
            message = f"provider {name} resumed" + (f" (was: {was})" if was else "")
        elif scope == "batch":
            batch_id = await self._require_batch(target)
            budget_pause = await holds.set_batch_paused(batch_id, False)  # a budget hold re-checks too
            self.engine.batch_changed(batch_id)
            self._emit(BatchEvent(event="resumed", batch_id=batch_id))
            message = f"batch {batch_id} resumed" + (f" (was: {budget_pause})" if budget_pause else "")
        else:
            raise CommandError(f"unknown pause scope {scope!r}")
        self.engine.wake()
        return CommandResult(message=message)

    # -- budgets ------------------------------------------------------------------------------

    async def set_budget(self, batch_id: str, budget: float | None) -> CommandResult:
        """Raise, lower or remove (None) a batch's credit budget; a batch paused by it tries again."""
        batch_id = await self._require_batch(batch_id)
        if budget is not None and budget <= 0:
            raise CommandError("a budget is more than 0 credits (or none)")
        await self.store.batches.set_batch_budget(batch_id, budget)
        self.engine.batch_changed(batch_id)
        self._emit(BatchEvent(event="budget", batch_id=batch_id, budget=budget))
        shown = "no budget" if budget is None else f"a budget of {budget:g} credits"
        return CommandResult(message=f"batch {batch_id} now has {shown}")

    # -- sharing a provider between batches ---------------------------------------------------

    async def set_priority(self, batch_id: str, priority: int) -> CommandResult:
        """A batch of a higher priority starts its jobs before those of lower ones; the next
        dispatch round already takes the new order."""
        batch_id = await self._require_batch(batch_id)
        await self.store.batches.set_batch_priority(batch_id, priority)
        self.engine.batch_changed(batch_id)
        self._emit(BatchEvent(event="priority", batch_id=batch_id, priority=priority))
        return CommandResult(message=f"batch {batch_id} now has priority {priority}")

    async def set_weight(self, batch_id: str, weight: float) -> CommandResult:
        """The batch's share of its provider among runnable batches of its priority."""
        batch_id = await self._require_batch(batch_id)
        if not 0 < weight < float("inf"):
            raise CommandError("a weight is a number more than 0 (1: an equal share)")
        await self.store.batches.set_batch_weight(batch_id, weight)
        self.engine.batch_changed(batch_id)
        self._emit(BatchEvent(event="weight", batch_id=batch_id, weight=weight))
        return CommandResult(message=f"batch {batch_id} now has weight {weight:g}")

    # -- review -------------------------------------------------------------------------------

    async def review(self, job_ids: Sequence[int], decision: ReviewStatus) -> CommandResult:
        """Move each job's image to the review folder of `decision` and record it."""
        if not job_ids:
            raise CommandError("say which jobs to review")
        await self._require_jobs(job_ids)
        moved: list[int] = []
        problems: list[str] = []
        finals = 0
        for job_id in job_ids:
            # Read, move, record (and the final that follows) for one job at a time: two decisions
            # at once would otherwise record one while the image sits where the other put it.
            async with self.engine.finals.review_locks.hold(job_id):
                decided = await self._decide(job_id, decision)
            if isinstance(decided, str):
                problems.append(decided)
            elif decided is not None:
                moved.append(job_id)
                finals += decided
        if problems and not moved:
            raise CommandError("; ".join(problems))
        message = f"{plural(len(moved), 'image')} marked {decision.value}"
        if finals:
            verb = "queued" if decision is ReviewStatus.APPROVED else "canceled before it started"
            message += f"; {plural(finals, 'final')} {verb}"
        if problems:
            message += "; " + "; ".join(problems[:MAX_IDS_LISTED])
        return CommandResult(job_ids=moved, message=message)

    async def _decide(self, job_id: int, decision: ReviewStatus) -> int | str | None:
        """Apply `decision` to one job (its review lock held): how many finals followed, or what
        kept it from being applied, or None for a job or batch gone meanwhile. The record is
        conditional on the review and file it was decided on; a change by anyone else in between
        (another process on this HOME) means deciding again from what is there now."""
        for _ in range(_DECIDE_TRIES):
            job = await self.store.jobs.get_job(job_id)
            if job is None:
                return None
            if job.file is None:
                return f"job {job_id} has no image ({job.state.value})"
            batch = await self.store.batches.get_batch(job.batch_id)
            if batch is None:
                return None
            try:
                relative = await asyncio.to_thread(
                    move_for_review, Path(batch.output_dir), job.file, decision
                )
            except (OSError, UnsafePathError) as error:
                return f"job {job_id}: {error}"
            # With what it means for the delivery bucket (moved, deleted), in one transaction.
            read = (job.review, job.file)
            if await self.engine.delivery.reviewed(job_id, batch, decision, relative, read=read):
                self.engine.writer.mark_dirty(batch.id)
                reviewed = JobEvent(
                    id=job_id, batch_id=job.batch_id, state=job.state, review=decision, file=relative
                )
                self._emit(reviewed)
                return await self._follow_draft(job, decision)
        return f"job {job_id} kept changing while it was reviewed; look again"

    async def _follow_draft(self, job: JobRow, decision: ReviewStatus) -> int:
        """A reviewed draft's final: queued on approval (once: approving again queues nothing, and
        a canceled final is queued again — see `Finals.requeue_canceled`); canceled while it has
        not started when the approval is taken back (a started one runs on: it may be charged
        already). How many finals were queued or canceled."""
        finals = self.engine.finals
        if decision is ReviewStatus.APPROVED:
            if await finals.queue(job) is not None:
                return 1
            requeued = await finals.requeue_canceled(job)
            if requeued is None:
                return 0
            await self._announce([requeued], JobState.QUEUED)
            self.engine.wake()
            return 1
        canceled = await finals.cancel_unstarted(job)
        if canceled is None:
            return 0
        await self.engine.stop_canceled([canceled])
        await self._announce([canceled], JobState.CANCELED)
        return 1

    # -- helpers ------------------------------------------------------------------------------

    async def _require_jobs(self, job_ids: Sequence[int]) -> None:
        missing = [job_id for job_id in job_ids if await self.store.jobs.get_job(job_id) is None]
        if missing:
            raise NotFound(f"no such job: {_ids(missing)}")

    async def _require_batch(self, batch_id: str | None) -> str:
        if not batch_id:
            raise CommandError("a batch id is needed")
        if await self.store.batches.get_batch(batch_id) is None:
            raise NotFound(f"no batch {batch_id}")
        return batch_id

    @staticmethod
    def _require_provider(name: str | None) -> str:
        if not name:
            raise CommandError("a provider name is needed")
        if name not in KNOWN_PROVIDERS:
            hint = did_you_mean(name, KNOWN_PROVIDERS)
            raise NotFound(f"no provider {name!r}{hint} (known: {', '.join(KNOWN_PROVIDERS)})")
        return name

    async def _announce(self, job_ids: Sequence[int], state: JobState) -> None:
        batches: set[str] = set()
        for job_id in job_ids:
            job = await self.store.jobs.get_job(job_id)
            if job is None:
                continue
            batches.add(job.batch_id)
            self._emit(JobEvent(id=job_id, batch_id=job.batch_id, state=state))
        for batch_id in batches:
            self.engine.writer.mark_dirty(batch_id)
