"""The store's interface: one Protocol per aggregate, and `StoreApi`, the object made of them.

The engine, the daemon and the CLI see only these. The SQLite backend (`Store`, store/store.py)
implements them, one module per aggregate; a second backend is a second implementation of the
same Protocols, checked by mypy where it is assigned to them, and run through the same contract
tests (tests/test_store_contract.py). What each method promises (which writes are one
transaction, which moves are conditional) is written on the SQLite implementation's method.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from wfbatch.core.states import JobState, ReviewStatus
from wfbatch.store.remote_batches import RemoteBatchRow
from wfbatch.store.rows import (
    AttemptRow,
    BatchRow,
    CapReached,
    CostLine,
    CounterCheck,
    DeliveryRow,
    JobRow,
    NewJob,
    NotificationRow,
    OutcomeRecord,
    PossibleDuplicate,
    Reuse,
)


class JobsApi(Protocol):
    """Jobs, their state changes and their attempts."""

    def fence(self, owner: str | None) -> None:
        """Fence the engine's writes about jobs on `owner` and its leases (store/fleet.py)."""
        ...

    async def get_job(self, job_id: int) -> JobRow | None: ...

    async def jobs_for_batch(self, batch_id: str) -> list[JobRow]: ...

    async def list_jobs(
        self,
        *,
        states: Sequence[JobState] = (),
        batch_id: str | None = None,
        text: str | None = None,
        review: ReviewStatus | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[JobRow]: ...

    async def ready_jobs(
        self,
        provider: str,
        limit: int,
        batch_ids: Sequence[str] | None = None,
        *,
        exclude_batch_ids: Sequence[str] = (),
        batch_mode: tuple[bool, str] | None = None,
        now: float | None = None,
    ) -> list[JobRow]:
        """Queued jobs of a provider in unpaused batches, highest priority first, then oldest.
        Given `now`, only of batches whose `not_before` has come.
        `exclude_batch_ids` holds back only jobs that would start a new execution."""

    async def ready_batches(
        self, provider: str, now: float, batch_ids: Sequence[str] | None = None
    ) -> list[BatchRow]:
        """Unpaused batches with queued jobs of a provider whose `not_before` has come, oldest first:
        the batches that share the provider's starts in a dispatch round."""

    async def queued_providers(self, batch_ids: Sequence[str] | None = None) -> set[str]: ...

    async def queued_batch_providers(self) -> dict[str, set[str]]: ...

    async def next_retry_at(self, batch_ids: Sequence[str] | None = None) -> float | None: ...

    async def in_flight_jobs(self) -> list[JobRow]:
        """Jobs submitting or running outside a remote batch: what a start resumes."""

    async def job_ids(
        self, *, states: Sequence[JobState], batch_id: str | None = None, limit: int = 1000000
    ) -> list[int]: ...

    async def recent_durations(self, provider: str, limit: int = 200) -> list[float]: ...

    async def canceled_live_executions(self, limit: int) -> list[JobRow]: ...

    async def failed_live_executions(self, limit: int) -> list[JobRow]:
        """Failed jobs whose known execution may still run and charge, and that hold a reservation."""

    async def recently_changed_batches(self, since: float) -> dict[str, float]: ...

    async def attempts_for(self, job_id: int) -> list[AttemptRow]: ...

    async def starts_since(
        self, provider: str, since: float, accounts: Sequence[str] | None = None
    ) -> int: ...

    async def promote_due_retries(self, now: float) -> int:
        """Retrying jobs whose `next_attempt_at` has come back to queued; how many moved."""

    async def transition(
        self, job_id: int, from_states: Iterable[JobState], to_state: JobState, **fields: Any
    ) -> bool:
        """Move the job to `to_state` if it is still in one of `from_states` (each checked against
        the transition table); False if another writer moved it first. Exact under concurrent movers."""

    async def update_job(self, job_id: int, **fields: Any) -> bool:
        """Set columns whatever the job's state; never the state itself (ValueError)."""

    async def record_outcome(self, job_id: int, record: OutcomeRecord) -> bool:
        """One run's outcome in ONE transaction: the attempt, the facts, the move (only from a
        working state), its delivery and notice, and the reservation released once no execution
        can charge. True if the job moved to `record.target`."""

    async def requeue_for_retry(self, job_ids: Sequence[int]) -> list[int]:
        """Failed or canceled jobs back to queued by hand, attempts and error reset; an execution
        that may still run keeps its key. The ids that moved."""

    async def cancel_jobs(self, job_ids: Sequence[int]) -> list[int]:
        """Unfinished jobs to canceled in one transaction; the ids that moved."""

    async def touch_job(self, job_id: int) -> None: ...

    async def add_attempt(
        self,
        job_id: int,
        *,
        kind: str,
        outcome: str,
        http_status: int | None = None,
        message: str | None = None,
        request_id: str | None = None,
        remote_id: str | None = None,
    ) -> None: ...


class BatchesApi(Protocol):
    """Batches: one accepted prompt file each."""

    async def insert_batch(
        self, batch: BatchRow, jobs: Sequence[NewJob], *, reuse: Reuse = Reuse.NEVER
    ) -> BatchRow | None:
        """The batch and all its jobs in ONE transaction, with the look-up of an earlier batch of
        the same content (as `reuse` allows): of two identical inserts at once, one inserts and
        the other gets the first's batch. The batch found instead, or None when inserted."""

    async def get_batch(self, batch_id: str) -> BatchRow | None: ...

    async def batches_named(self, ref: str, limit: int = 10) -> list[BatchRow]: ...

    async def list_batches(self, limit: int = 100) -> list[BatchRow]: ...

    async def list_batches_page(self, limit: int, before_id: str | None = None) -> list[BatchRow]: ...

    async def batch_with_content_exists(self, content_hash: str) -> BatchRow | None: ...

    async def batch_ids_with_content(self, content_hash: str, source_name: str) -> set[str]: ...

    async def output_dir_taken(self, output_dir: str) -> bool: ...

    async def set_batch_budget(self, batch_id: str, budget: float | None) -> bool: ...

    async def set_batch_priority(self, batch_id: str, priority: int) -> bool: ...

    async def set_batch_weight(self, batch_id: str, weight: float) -> bool: ...

    async def set_batch_paused(self, batch_id: str, paused: bool) -> bool: ...

    async def next_not_before(self, after: float, batch_ids: Sequence[str] | None = None) -> float | None:
        """The earliest `not_before` still ahead of `after` among unpaused batches (None: none)."""

    async def paused_batch_ids(self) -> set[str]: ...


class CountersApi(Protocol):
    """Jobs by state, charges and queue waits, as kept counters."""

    async def counts(self, batch_ids: Iterable[str] | None = None) -> dict[str, int]: ...

    async def counts_by(self, column: str) -> dict[str, dict[str, int]]: ...

    async def credits_used_by(self, column: str, keys: Sequence[str] | None = None) -> dict[str, float]: ...

    async def counts_for_batches(self, batch_ids: Sequence[str]) -> dict[str, dict[str, int]]: ...

    async def check_counters(self) -> CounterCheck:
        """Compare the kept counters with what they count; rebuild the ones that disagree."""

    async def queue_waits(self, recent: int = 1000) -> tuple[int, float, list[float]]: ...

    async def cache_hits(self, batch_ids: Sequence[str]) -> int: ...

    async def pending_reviews(self) -> int:
        """Images done and waiting for a review decision, over every batch."""


class DraftsApi(Protocol):
    """Drafts and their finals."""

    async def queue_final(
        self, draft_id: int, uid: str, final_cache_key: str, spec_json: str | None = None
    ) -> int | None:
        """The final of an approved draft as a new job, once per draft even for two approvals at
        once; its id, or None (no draft, or its final exists). `spec_json`: the final's spec when
        it differs from the draft's stored `final_spec` (made from the draft's picture)."""

    async def final_of(self, draft_id: int) -> JobRow | None: ...

    async def cancel_unstarted_final(self, draft_id: int) -> int | None:
        """Cancel the draft's final only if it never started (queued or retrying, execution none),
        checked and done in one conditional update; the canceled final's id, or None."""

    async def finals_of(self, draft_ids: Sequence[int]) -> dict[int, JobRow]: ...

    async def draft_reviews(self) -> tuple[int, int]: ...

    async def pipeline_counts(self, batch_ids: Sequence[str] | None = None) -> dict[str, int]: ...


class LedgerApi(Protocol):
    """The credit ledger and the caps checked on it."""

    def fence(self, owner: str | None) -> None:
        """Fence the settling of jobs' money on `owner` and its leases (store/fleet.py)."""
        ...

    async def reserve_under_caps(
        self,
        job_id: int,
        batch_id: str,
        provider: str,
        cost: float,
        *,
        budget: float | None,
        daily_cap: float | None,
        day: str,
        account: str | None = None,
        account_cap: float | None = None,
    ) -> CapReached | None:
        """Check the batch's budget, the provider's daily cap and the account's (`account_cap`,
        counting the ledger rows of `account` today) for `cost` and reserve it on `account`,
        atomically against every other reservation; what refused it, or None."""

    async def reserve(self, job_id: int, batch_id: str, provider: str, credits: float) -> None: ...

    async def settle_finished(
        self, job_id: int, charged: float | None, result: dict[str, Any] | None
    ) -> float | None:
        """In ONE transaction: release the reservation, record the charge (None: the estimate),
        keep `result`, mark the execution finished. None if recorded before: never charged twice."""

    async def release(self, job_id: int) -> None: ...

    async def assume_charged(self, job_id: int) -> None: ...

    async def batch_exposure(self, batch_id: str) -> float: ...

    async def provider_exposure(self, provider: str, day: str) -> float: ...

    async def charged(
        self, *, batch_id: str | None = None, provider: str | None = None, account: str | None = None
    ) -> float:
        """Credits charged, by batch, provider and the account the charge came from."""

    async def reserved_total(self) -> float: ...

    async def leaked_reservations(self, reserved_before: float | None = None) -> list[int]:
        """Jobs holding a reservation although no execution of theirs may exist."""

    async def cost_lines(self, *, since: str | None = None, until: str | None = None) -> list[CostLine]:
        """Images, cache hits, charges and refunds per (batch, provider, model, day), between two ISO
        dates (both included; None: open)."""

    async def average_charges(self) -> dict[tuple[str, str | None], float]:
        """The average charge of one image per (provider, model), over the whole ledger."""

    async def possible_duplicates(
        self, *, since: str | None = None, until: str | None = None
    ) -> list[PossibleDuplicate]:
        """Jobs that may have been charged twice, on the day they finished."""


class CacheApi(Protocol):
    """The cache index: cache key → the original's sha256 and media type; and the input pictures
    uploaded to a provider's storage (sha256 → URL, expiry)."""

    async def get(self, key: str) -> tuple[str, str] | None: ...

    async def put(self, key: str, sha256: str, media_type: str) -> None: ...

    async def cached_keys(self, keys: Sequence[str]) -> set[str]: ...

    async def upload_of(self, provider: str, account: str, sha256: str) -> tuple[str, float] | None:
        """(URL, expires at) of an input picture uploaded to the provider's storage, if recorded."""

    async def remember_upload(
        self, provider: str, account: str, sha256: str, url: str, expires_at: float
    ) -> None: ...


class PausesApi(Protocol):
    """Pauses of a scope (global, a provider), with their reasons."""

    async def by_scope(self) -> dict[str, str]: ...

    async def set_pause(self, scope: str, reason: str) -> None: ...

    async def clear_pause(self, scope: str) -> bool: ...


class OutboxApi(Protocol):
    """Deliveries to the bucket and the notification outbox."""

    async def review(
        self,
        job_id: int,
        review: str,
        file: str,
        want: str | None,
        *,
        deliver: bool,
        read: tuple[str, str] | None = None,
    ) -> bool:
        """Record a review (and what the bucket should hold) in one transaction; with `read`, only
        while the job still has that (review, file): False, and nothing recorded, otherwise."""

    async def want_manifest(self, batch_id: str) -> None: ...

    async def due(self, now: float, limit: int, skip: set[int]) -> list[DeliveryRow]: ...

    async def next_due(self) -> float | None: ...

    async def delivered(
        self,
        row: DeliveryRow,
        *,
        have_url: str | None,
        etag: str | None,
        presigned_url: str | None = None,
        presigned_until: float | None = None,
    ) -> None: ...

    async def retry_later(self, row: DeliveryRow, at: float, error: str) -> None: ...

    async def hold(self, row: DeliveryRow, reason: str) -> None: ...

    async def release_held(self) -> int: ...

    async def for_batch(self, batch_id: str) -> dict[int | None, DeliveryRow]: ...

    async def for_job(self, job_id: int) -> DeliveryRow | None: ...

    async def backlog(self, batch_id: str | None = None) -> dict[str, int]: ...

    async def held_reasons(self, limit: int = 5) -> list[str]: ...

    async def enqueue_notification(self, key: str, batch_id: str, kind: str, payload: dict[str, Any]) -> bool:
        """Queue a notification once per `key`; False when it was queued before."""

    async def due_notifications(self, now: float, limit: int) -> list[NotificationRow]: ...

    async def pending_notifications(self) -> int: ...

    async def notification_sent(self, notification_id: int) -> None: ...

    async def notification_retry(self, row: NotificationRow, at: float, error: str) -> None: ...

    async def notification_failed(self, row: NotificationRow, error: str) -> None: ...


class RemoteBatchesApi(Protocol):
    """Remote batches (a provider's batch API) and their jobs."""

    async def gather(
        self,
        provider: str,
        batch_id: str,
        model: str,
        tag: str,
        job_ids: Sequence[int],
        now: float,
        account: str | None = None,
    ) -> tuple[RemoteBatchRow, list[int]] | None:
        """The row and its jobs in ONE transaction: only jobs still queued and in no live remote
        batch join, as submitting with an execution that may exist, on `account` (the row's and
        each job's: pinned to it). None when none joined."""

    async def get(self, row_id: int) -> RemoteBatchRow | None: ...

    async def live(self, batch_ids: Sequence[str] | None = None) -> list[RemoteBatchRow]: ...

    async def of_batches(self, batch_ids: Sequence[str]) -> list[RemoteBatchRow]: ...

    async def live_lines(self, provider: str, model: str, account: str | None = None) -> tuple[int, int]: ...

    async def update(self, row_id: int, **fields: Any) -> None: ...

    async def started(self, row_id: int, remote_id: str, status: str, now: float) -> None:
        """The remote batch's id kept and its jobs still submitting moved to running, in one
        transaction."""

    async def keys_in_flight(self, provider: str, batch_ids: Sequence[str] | None = None) -> set[str]:
        """Cache keys of the provider's jobs in live remote batches (of these batches, if given)."""

    async def members(self, row_id: int) -> list[JobRow]: ...

    async def rows_of_jobs(self, job_ids: Sequence[int]) -> list[RemoteBatchRow]: ...

    async def close(self, row_id: int, message: str | None, now: float) -> None: ...


class StoreApi(Protocol):
    """A store backend: one object per aggregate, on one database."""

    @property
    def jobs(self) -> JobsApi: ...

    @property
    def batches(self) -> BatchesApi: ...

    @property
    def counters(self) -> CountersApi: ...

    @property
    def drafts(self) -> DraftsApi: ...

    @property
    def ledger(self) -> LedgerApi: ...

    @property
    def cache(self) -> CacheApi: ...

    @property
    def pauses(self) -> PausesApi: ...

    @property
    def outbox(self) -> OutboxApi: ...

    @property
    def remote_batches(self) -> RemoteBatchesApi: ...

    async def close(self) -> None: ...

    async def probe_write(self) -> None:
        """Commit a write that needs fresh pages: raises when the disk is full."""
