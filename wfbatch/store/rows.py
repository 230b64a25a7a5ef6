"""Typed rows read from and written to the store."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal, NamedTuple

from wfbatch.core.models import AutoApprove, ImageFormat, InputImage, JobSpec
from wfbatch.core.states import ErrorClass, Execution, JobState, ReviewStatus
from wfbatch.store.database import SqlRow

Stage = Literal["draft", "final"]

ERROR_COLUMNS = ("error_class", "error_status", "error_message", "error_request_id")
"""A job's last error: set together when a run fails, cleared together (`CLEARED_ERROR`)."""
CLEARED_ERROR: dict[str, Any] = dict.fromkeys(ERROR_COLUMNS)
"""The error columns reset, as fields of a move (`transition`, an `OutcomeRecord`): every reset
of a job's error is this one, in SQL too (store/jobs.py)."""


def spec_to_json(spec: JobSpec) -> str:
    # ImageFormat is a str enum: it serialises as its value.
    return json.dumps(dataclasses.asdict(spec), ensure_ascii=False)


def spec_from_json(text: str) -> JobSpec:
    data = json.loads(text)
    inputs = tuple(InputImage(**item) for item in data.get("inputs") or ())
    return JobSpec(**{**data, "format": ImageFormat(data["format"]), "inputs": inputs})


class NewJob(NamedTuple):
    """A job about to be inserted with its batch. A NamedTuple, not a frozen dataclass: ingest makes
    one per job, and a frozen dataclass's `__init__` (one `object.__setattr__` per field) cost
    four times as much, ~0.4 s of a 100,000-job file on the benchmark machine."""

    uid: str
    idx: int
    line: int
    user_id: str | None
    spec: JobSpec
    tags: list[str]
    cache_key: str
    priority: int
    final_spec: JobSpec | None = None
    """What approving this job (a draft) queues; None outside a draft → final batch."""
    spec_json: str | None = None
    """`spec` as JSON, when the caller made it already (ingest makes it with the cache key)."""


@dataclass(frozen=True)
class BatchRow:
    id: str
    name: str
    source_name: str
    content_hash: str
    provider: str
    cache_enabled: bool
    budget: float | None
    output_dir: str
    paused: bool
    created_at: float
    auto_approve: AutoApprove = AutoApprove.NONE
    """Which drafts are approved as soon as they finish (see core.models.AutoApprove)."""
    delivery: dict[str, Any] | None = None
    """What the batch spec's `delivery` overrides of the HOME's [delivery] (None: nothing)."""
    notify: dict[str, Any] | None = None
    """What the batch spec's `notify` overrides of the HOME's [notify] (None: nothing)."""
    priority: int = 0
    """Batches of a higher priority start their jobs first (`wfbatch priority`)."""
    weight: float = 1.0
    """Its share of a provider among runnable batches of the same priority (`wfbatch weight`)."""
    not_before: float | None = None
    """No job of it starts before this time (unix seconds); None: as soon as it may."""

    @classmethod
    def from_sql(cls, row: SqlRow) -> BatchRow:
        return cls(
            id=row["id"],
            name=row["name"],
            source_name=row["source_name"],
            content_hash=row["content_hash"],
            provider=row["provider"],
            cache_enabled=bool(row["cache_enabled"]),
            budget=row["budget"],
            output_dir=row["output_dir"],
            paused=bool(row["paused"]),
            created_at=row["created_at"],
            auto_approve=AutoApprove(row["auto_approve"]),
            delivery=json.loads(row["delivery"]) if row["delivery"] else None,
            notify=json.loads(row["notify"]) if row["notify"] else None,
            priority=row["priority"],
            weight=row["weight"],
            not_before=row["not_before"],
        )


@dataclass(frozen=True)
class JobRow:
    id: int
    uid: str
    batch_id: str
    idx: int
    line: int
    user_id: str | None
    provider: str
    spec: JobSpec
    tags: list[str]
    cache_key: str
    priority: int
    state: JobState
    review: ReviewStatus
    attempts: int
    generation: int
    next_attempt_at: float | None
    remote_id: str | None
    result: dict[str, Any] | None
    file: str | None
    cache_hit: bool
    credits: float | None
    error_class: ErrorClass | None
    error_status: int | None
    error_message: str | None
    error_request_id: str | None
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    reserved: float | None = None
    """Credits reserved in the ledger for this job's execution and not yet settled."""
    execution: Execution = Execution.NONE
    """What is known of the remote execution of the current generation."""
    possible_duplicate_charge: str | None = None
    """Why this job may have been paid for twice (None: it was not)."""
    handle: dict[str, Any] | None = None
    """What the provider's submit returned to poll the execution with (set with `remote_id`)."""
    final_spec: JobSpec | None = None
    """A draft's final: what approving it queues (None: not a draft)."""
    draft_of: int | None = None
    """A final's draft (None: not a final)."""
    account: str | None = None
    """The provider account its last start went to (None: never started, or before accounts)."""

    @property
    def stage(self) -> Stage | None:
        if self.draft_of is not None:
            return "final"
        return "draft" if self.final_spec is not None else None

    @classmethod
    def from_sql(cls, row: SqlRow) -> JobRow:
        return cls(
            id=row["id"],
            uid=row["uid"],
            batch_id=row["batch_id"],
            idx=row["idx"],
            line=row["line"],
            user_id=row["user_id"],
            provider=row["provider"],
            spec=spec_from_json(row["spec"]),
            tags=json.loads(row["tags"]),
            cache_key=row["cache_key"],
            priority=row["priority"],
            state=JobState(row["state"]),
            review=ReviewStatus(row["review"]),
            attempts=row["attempts"],
            generation=row["generation"],
            next_attempt_at=row["next_attempt_at"],
            remote_id=row["remote_id"],
            result=json.loads(row["result"]) if row["result"] else None,
            file=row["file"],
            cache_hit=bool(row["cache_hit"]),
            credits=row["credits"],
            error_class=ErrorClass(row["error_class"]) if row["error_class"] else None,
            error_status=row["error_status"],
            error_message=row["error_message"],
            error_request_id=row["error_request_id"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            reserved=row["reserved"],
            execution=Execution(row["execution"]),
            handle=json.loads(row["handle"]) if row["handle"] else None,
            possible_duplicate_charge=row["possible_duplicate_charge"],
            final_spec=spec_from_json(row["final_spec"]) if row["final_spec"] else None,
            draft_of=row["draft_of"],
            account=row["account"],
        )


@dataclass(frozen=True)
class AttemptRecord:
    """One provider request's outcome, to be written with the job's outcome."""

    kind: str
    outcome: str
    http_status: int | None = None
    message: str | None = None
    request_id: str | None = None
    remote_id: str | None = None


@dataclass(frozen=True)
class Notice:
    """A notification for the outbox, queued once per `key` (see `store.outbox.enqueue_notification`)."""

    key: str
    kind: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class OutcomeRecord:
    """How one run of a job ended (or one step of it), written in ONE transaction by
    `store.jobs.record_outcome`: the attempt row, the move, the facts about the execution, and the
    credit reservation given back when no execution can charge any more."""

    target: JobState | None = None
    """The state to move to (from whichever working state allows it), or None to stay."""
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Columns set with the move (and only if it happens: a cancel may have come first)."""
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Columns set whatever the job's state: facts about its execution (remote id, handle; an
    `execution` given here is taken as said instead of worked out)."""
    attempt: AttemptRecord | None = None
    start_refused: bool = False
    """The provider refused a new start outright: nothing was created (see `execution_after`)."""
    ended: bool = False
    """The provider said the execution ended without an image."""
    deliver: bool = False
    """The job's image (`fields["file"]`) is to be uploaded: its delivery is recorded with the move."""
    notice: Notice | None = None
    """Someone is to be told of the move (`job.failed`): queued with it, so a crash cannot lose it."""


@dataclass(frozen=True)
class AttemptRow:
    """One provider request outcome of a job: when, what, and what the provider said."""

    id: int
    job_id: int
    at: float
    kind: str
    outcome: str
    http_status: int | None
    message: str | None
    request_id: str | None
    remote_id: str | None

    @classmethod
    def from_sql(cls, row: SqlRow) -> AttemptRow:
        return cls(
            id=row["id"],
            job_id=row["job_id"],
            at=row["at"],
            kind=row["kind"],
            outcome=row["outcome"],
            http_status=row["http_status"],
            message=row["message"],
            request_id=row["request_id"],
            remote_id=row["remote_id"],
        )


@dataclass(frozen=True)
class DeliveryRow:
    """One object of a batch in the bucket: what should be there (`want`) against what is."""

    id: int
    batch_id: str
    job_id: int | None
    """None: the batch's manifest."""
    kind: str
    """`image` or `manifest`."""
    want: str | None
    """The path inside the batch folder that should be in the bucket; None: nothing should."""
    have_url: str | None
    """`s3://bucket/key` of the object uploaded last; None: none is."""
    etag: str | None
    delivered_at: float | None
    presigned_url: str | None
    presigned_until: float | None
    state: str
    """`pending` (to do), `done` (the bucket agrees), `held` (cannot be done: see `error`)."""
    attempts: int
    next_attempt_at: float | None
    error: str | None

    @classmethod
    def from_sql(cls, row: SqlRow) -> DeliveryRow:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class NotificationRow:
    id: int
    key: str
    batch_id: str
    type: str
    payload: dict[str, Any]
    attempts: int

    @classmethod
    def from_sql(cls, row: SqlRow) -> NotificationRow:
        return cls(
            id=row["id"],
            key=row["key"],
            batch_id=row["batch_id"],
            type=row["type"],
            payload=json.loads(row["payload"]),
            attempts=row["attempts"],
        )


class Reuse(Enum):
    """Which earlier batch of the same content identity `insert_batch` returns instead of inserting."""

    NEVER = "never"
    """Always a new batch (duplicates wanted)."""
    UNFINISHED = "unfinished"
    """An unfinished one, resumed (`wfbatch run` of the same file again)."""
    ANY = "any"
    """Any: the content was accepted before, nothing is enqueued (the inbox, `submit`)."""


@dataclass(frozen=True)
class CounterCheck:
    """What `check_counters` found: the counter tables that disagreed and were rebuilt."""

    rebuilt: tuple[str, ...]


@dataclass(frozen=True)
class CapReached:
    """Why a reservation was refused: the batch's `budget`, the provider's `daily` cap or the
    account's daily cap (`account_daily`), with the exposure (charged + reserved) it would have
    gone past."""

    cap: Literal["budget", "daily", "account_daily"]
    exposure: float
    limit: float


@dataclass(frozen=True)
class CostLine:
    """One (batch, provider, model, day) cell of what the ledger and the jobs say was spent and made.
    Images and cache hits count on the day their job finished; credits on the day they were charged."""

    batch_id: str
    batch_name: str
    provider: str
    model: str | None
    day: str
    images: int = 0
    """Images the provider made (cache hits excluded)."""
    cache_hits: int = 0
    charged: float = 0.0
    """The ledger's `charge` rows: what the provider charged, or the estimate when it does not say."""
    refunds: float = 0.0
    """The ledger's `refund` rows, as a positive amount (none are written yet: see the README)."""
    account: str | None = None
    """The provider account the images were made and charged on; None for cache hits (no account
    was asked) and for jobs from before accounts."""


@dataclass(frozen=True)
class PossibleDuplicate:
    """A job whose start was re-sent to a provider that cannot tell a re-send: maybe paid twice."""

    job_uid: str
    batch_id: str
    provider: str
    model: str | None
    day: str
    credits: float | None
    why: str
    account: str | None = None
