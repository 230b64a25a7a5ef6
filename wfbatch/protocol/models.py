"""Requests and answers of the daemon's `/v1` API (see `wfbatch.protocol`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from wfbatch.core.progress import JobProgress
from wfbatch.core.states import ErrorClass, JobState, ReviewStatus

API_VERSION = 1
MAX_PAGE = 500
MAX_ID = 2**63 - 1
"""Job ids are SQLite rowids (signed 64-bit): no larger id can exist."""
MAX_BATCH_PRIORITY = 1_000_000
MAX_BATCH_WEIGHT = 1000.0

JobId = Annotated[int, Field(ge=1, le=MAX_ID)]
Credits = Annotated[float, Field(ge=0, allow_inf_nan=False)]
"""A budget in credits: finite and not negative (NaN would compare as "no cap")."""
Timestamp = datetime
"""A moment, as ISO 8601 on the wire (like the manifests): the daemon hands epoch seconds, which
pydantic turns into an aware UTC datetime."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Request(_Model):
    """A body a client sends: numbers from outside are checked, NaN/Infinity refused everywhere."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class ErrorInfo(_Model):
    """The last error of a job, as the provider gave it."""

    http_status: int | None = None
    message: str
    request_id: str | None = None
    error_class: ErrorClass | None = None


def error_headline(http_status: int | None) -> str:
    """What kind of failure an error is, for people: an execution that failed on the provider's side
    arrives in a 2xx answer, and "HTTP 200: NSFW content detected" reads as a success."""
    if http_status is None:
        return "no answer"
    if 200 <= http_status < 300:
        return "execution failed"
    return f"HTTP {http_status}"


class Health(_Model):
    ok: bool
    version: str
    api_version: int
    pid: int
    started_at: Timestamp
    home: str


class ServerStatus(_Model):
    """One server of a provider that has several (ComfyUI, one per GPU)."""

    host: str
    """host:port only (no path, no credentials)."""
    up: bool
    down_since: Timestamp | None = None
    jobs: int = 0
    """This provider's jobs queued or running there."""

    def describe(self) -> str:
        """`127.0.0.1:8188 up, 2 jobs` / `127.0.0.1:8189 down since 12:01, 1 job` (local time)."""
        state = "up"
        if not self.up:
            since = self.down_since.astimezone().strftime("%H:%M") if self.down_since else None
            state = f"down since {since}" if since else "down"
        return f"{self.host} {state}, {self.jobs} job{'' if self.jobs == 1 else 's'}"


class AccountStatus(_Model):
    """One account of a provider that has several (never its key)."""

    name: str
    pool: str
    """The quota pool whose limits it uses (its own name unless it shares one)."""
    weight: float = 1.0
    state: Literal["ready", "blocked", "held"] = "ready"
    """held: starts nothing (a bad key, no credit, a cap); blocked: its pool waits out a 429."""
    why: str | None = None
    kind: str | None = None
    """What holds it: authentication, credits, unreachable, daily_cap."""
    requests_in_window: int = 0
    requests_per_minute: int | None = None
    executions_in_window: int = 0
    executions_per_minute: int | None = None
    in_flight: int = 0
    """Its pool's executions in flight."""
    max_in_flight: int = 0
    balance: float | None = None
    """What the provider last said is left on its key, where it tells one (None: not known)."""

    def describe(self) -> str:
        """`studio  4/10 starts/min, 2/4 in flight, ready` / `client  held: authentication failed`."""
        starts = f"{self.executions_in_window}/{self.executions_per_minute or '-'} starts/min"
        line = f"{self.name}  {starts}, {self.in_flight}/{self.max_in_flight} in flight"
        if self.balance is not None:
            line += f", balance {self.balance:.6g}"
        line += f", {self.state}"
        if self.pool != self.name:
            line = f"{self.name} (pool {self.pool})" + line.removeprefix(self.name)
        return f"{line}: {self.why}" if self.why else line


class ProviderStatus(_Model):
    name: str
    label: str
    requests_in_window: int = 0
    requests_per_minute: int | None = None
    executions_in_window: int = 0
    executions_per_minute: int | None = None
    in_flight: int = 0
    max_in_flight: int = 0
    daily_executions: int = 0
    daily_cap: int | None = None
    blocked_for: float = 0.0
    block_reason: str | None = None
    paused: str | None = None
    """Why nothing is started, e.g. "out of credits: 10 required, 3 available"; None when running."""
    pause_details: dict[str, Any] = Field(default_factory=dict)
    """Figures behind a pause, e.g. {"kind": "credits", "required": 10, "available": 3}."""
    requests_sent: int = 0
    rate_limited: int = 0
    next_start_in: float = 0.0
    """Seconds until the limits let a new start out (0 when one may go now)."""
    next_start_why: str | None = None
    """The limit behind that wait, e.g. "10/min request limit"; None when nothing waits."""
    balance: float | None = None
    """What the provider says is left on the account, in its unit; None where it cannot tell."""
    balance_at: Timestamp | None = None
    """When that balance was read: it is refreshed every few minutes, not live."""
    jobs: dict[str, int] = Field(default_factory=dict)
    credits_used: float = 0.0
    """Credits charged for this provider's finished jobs (all batches)."""
    servers: list[ServerStatus] = Field(default_factory=list)
    """Each server, for providers that spread jobs over several (empty otherwise)."""
    accounts: list[AccountStatus] = Field(default_factory=list)
    """Each account, for a provider configured with several (empty otherwise)."""

    def start_wait(self) -> tuple[float, str] | None:
        """(seconds, limit) while queued work waits a second or more behind a limit, else None:
        what `status`, the TUI and `run`'s bar all say as "next start in 48s: 10/min request limit"."""
        queued = self.jobs.get("queued", 0) + self.jobs.get("retrying", 0)
        if self.paused or not queued or self.next_start_why is None or self.next_start_in < 1.0:
            return None
        return self.next_start_in, self.next_start_why


class RemoteBatchSummary(_Model):
    """One remote batch of a batch in batch mode (OpenAI Batch): its progress as the provider
    reports it (`request_counts`)."""

    id: int
    remote_id: str | None = None
    step: str
    """gathered, uploading, uploaded, creating, started, collecting, closed (ours)."""
    status: str | None = None
    """The provider's: validating, in_progress, finalizing, completed, expired, failed, cancelled."""
    lines: int
    completed: int = 0
    failed: int = 0
    message: str | None = None

    @property
    def live(self) -> bool:
        return self.step != "closed"


class BatchSummary(_Model):
    id: str
    name: str
    source_name: str
    provider: str
    created_at: Timestamp
    output_dir: str
    paused: bool
    counts: dict[str, int]
    total: int
    eta_seconds: float | None = None
    """From the provider's binding limits and observed latency, this batch's jobs and every older
    batch's ahead of them; 0 when nothing is left, None while held (see `Status.holds`)."""
    budget: float | None = None
    pause_reason: str | None = None
    """Why the batch is held back besides a pause by hand, e.g. `budget reached: 10 of 10 credits`."""
    credits_used: float = 0.0
    remote_batches: list[RemoteBatchSummary] = []
    """Its remote batches (batch mode), oldest first."""
    priority: int = 0
    """Batches of a higher priority start first (`wfbatch priority`)."""
    weight: float = 1.0
    """Its share of a provider among runnable batches of the same priority (`wfbatch weight`)."""
    share: float | None = None
    """The share of its provider's starts it gets now (weight among the runnable batches of its
    priority; 0 behind a higher priority); None when it has nothing queued to start."""
    not_before: Timestamp | None = None
    """No job of it starts before this time; set while that time is still ahead (`scheduled`)."""

    def remote_progress(self) -> str | None:
        """`batch in_progress 12/20` for the live remote batches; None when there are none."""
        live = [r for r in self.remote_batches if r.live]
        if not live:
            return None
        done = sum(r.completed + r.failed for r in live)
        statuses = sorted({r.status or r.step for r in live})
        return f"batch {'/'.join(statuses)} {done}/{sum(r.lines for r in live)}"


class DeliveryBacklog(_Model):
    """Uploads to the delivery bucket, by state, over every batch."""

    pending: int = 0
    """To do: new images, moves after a review, manifests, and uploads waiting to be tried again."""
    held: int = 0
    """Stuck until the configuration changes (or the daemon restarts): see `held_reasons`."""
    done: int = 0
    held_reasons: list[str] = Field(default_factory=list)


class DeliveryInfo(_Model):
    """One image's object in the delivery bucket."""

    state: str
    """`pending`, `done` or `held`."""
    url: str | None = None
    """`s3://bucket/key` of the object uploaded last; None while none is."""
    etag: str | None = None
    at: Timestamp | None = None
    presigned_url: str | None = None
    error: str | None = None
    """Why the last try failed (held: why it is stuck)."""


class Hold(_Model):
    """Something that keeps work from starting: what it holds, why, and what lifts it."""

    scope: Literal["everything", "provider", "batch"]
    target: str | None = None
    """The provider's name or the batch's id; None for everything."""
    kind: str
    """pause, disk, credits, authentication, unreachable, config, daily_cap, daily_credit_cap, budget."""
    reason: str
    lift: str
    """What lifts it, for people: usually a command (`wfbatch resume --provider wireflow`)."""


class DaemonInfo(_Model):
    """One of several daemons sharing a PostgreSQL database, and the provider accounts it serves."""

    id: str
    host: str
    pid: int
    heartbeat_age: float
    """Seconds since it last said it runs (past the lease timeout, its accounts go to another)."""
    accounts: list[str] = Field(default_factory=list)
    """"provider/account" of each account it serves."""
    this: bool = False
    """The daemon answering this request."""


class Status(_Model):
    version: str
    jobs: dict[str, int]
    """Jobs by state: queued, submitting, running, retrying, done, failed, canceled."""
    paused: bool
    pause_reason: str | None = None
    providers: dict[str, ProviderStatus]
    batches: list[BatchSummary]
    """The most recent batches (at most 50)."""
    pipeline: dict[str, int] | None = None
    """Draft → final batches: drafts, drafts_done, approved, rejected, finals, finals_done; None
    when there are none."""
    delivery: DeliveryBacklog = Field(default_factory=DeliveryBacklog)
    holds: list[Hold] = Field(default_factory=list)
    """Every hold on everything, the providers and the batches listed, with what lifts each."""
    review_pending: int = 0
    """Images done and waiting for a review decision (approve or reject), over every batch."""
    eta_seconds: float | None = None
    """Until all work that can move is done, from the binding limits and observed latency; None
    when nothing can move (see `holds`)."""
    daemons: list[DaemonInfo] = Field(default_factory=list)
    """The daemons sharing this queue (PostgreSQL); empty for the one daemon of a SQLite HOME."""

    def hold_of(self, batch: BatchSummary) -> Hold | None:
        """The hold that keeps this batch from moving: everything's, its provider's, or its own."""
        for hold in self.holds:
            if hold.scope == "everything" or (hold.scope == "provider" and hold.target == batch.provider) or (
                hold.scope == "batch" and hold.target == batch.id
            ):
                return hold
        return None


class JobSummary(_Model):
    id: int
    batch_id: str
    index: int
    line: int
    state: JobState
    review: ReviewStatus
    prompt: str
    provider: str
    attempts: int
    error: ErrorInfo | None = None
    file: str | None = None
    """Path relative to the batch's output folder."""
    cache_hit: bool = False
    credits: float | None = None
    remote_id: str | None = None
    updated_at: Timestamp
    stage: Literal["draft", "final"] | None = None
    """In a draft → final batch: a draft (for review) or the final its approval queued."""
    draft_of: int | None = None
    """A final's draft."""
    final_id: int | None = None
    """A draft's final, once the draft was approved."""
    progress: JobProgress | None = None
    """A running job's progress where its provider tells it (ComfyUI's steps): live, never stored;
    None otherwise. Added in API 1 (older clients ignore it)."""


class Attempt(_Model):
    at: Timestamp
    kind: str
    outcome: str
    http_status: int | None = None
    message: str | None = None
    request_id: str | None = None
    remote_id: str | None = None


class JobInput(_Model):
    """A picture a job sends (`image`, `mask`, `images`): as the prompt file named it, and where."""

    role: str
    source: str
    """As written (a path or an https:// URL), or `draft:<job id>` for a final made from its draft."""
    path: str | None = None
    """Where it is read on the daemon's machine; None for a URL."""
    url: str | None = None
    sha256: str


class JobDetail(JobSummary):
    negative_prompt: str | None = None
    model: str | None = None
    seed: int
    width: int
    height: int
    variant: int
    format: str
    params: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    output_dir: str
    file_path: str | None = None
    """Absolute path of the image, when there is one."""
    inputs: list[JobInput] = Field(default_factory=list)
    """The pictures sent with the prompt (shown beside the result)."""
    next_attempt_at: Timestamp | None = None
    possible_duplicate_charge: bool = False
    possible_duplicate_charge_why: str | None = None
    """Why this image may have been paid for twice (a start re-sent after a lost answer)."""
    delivery: DeliveryInfo | None = None
    """Its object in the delivery bucket, when the batch has one."""
    attempts_history: list[Attempt] = Field(default_factory=list)


T = TypeVar("T")


class Page(_Model, Generic[T]):
    items: list[T]
    next_cursor: str | None = None
    """Pass back as `cursor` for the next page; None on the last page."""


class RetryRequest(_Request):
    job_ids: list[JobId] = Field(default_factory=list)
    failed_of_batch: str | None = None
    all_failed: bool = False


class CancelRequest(_Request):
    job_ids: list[JobId] = Field(default_factory=list)
    batch_id: str | None = None


class EditRequest(_Request):
    prompt: str = Field(min_length=1, max_length=32_000)


class PauseRequest(_Request):
    scope: Literal["global", "batch", "provider"]
    id: str | None = Field(default=None, max_length=200)
    """Batch id or provider name; None for global."""
    reason: str | None = Field(default=None, max_length=2000)


class BudgetRequest(_Request):
    budget: Credits | None
    """Credits the batch may spend; None removes the budget."""


class PriorityRequest(_Request):
    priority: int = Field(ge=-MAX_BATCH_PRIORITY, le=MAX_BATCH_PRIORITY)
    """Batches of a higher priority start their jobs first; 0 by default."""


class WeightRequest(_Request):
    weight: float = Field(gt=0, le=MAX_BATCH_WEIGHT, allow_inf_nan=False)
    """The batch's share of its provider among runnable batches of its priority; 1 by default."""


class ReviewRequest(_Request):
    job_ids: list[JobId]
    decision: Literal["approve", "reject", "pending"]


class SubmitRequest(_Request):
    name: str = Field(min_length=1, max_length=255)
    """A file name: its suffix (.txt .jsonl .csv .json) says the format unless `format` is set."""
    content: str
    format: Literal["txt", "jsonl", "csv", "json"] | None = None
    provider: str | None = Field(default=None, max_length=200)
    budget: Credits | None = None
    not_before: Timestamp | None = None
    """No job of the batch starts before this moment (replaces the file's `not_before`)."""
    dry_run: bool = False
    """Validate only: answer as a real submit would, enqueue nothing."""
    folder: str | None = Field(default=None, max_length=4096)
    """The prompt file's folder, absolute, on the daemon's machine: where its input pictures may be
    (besides the HOME's `inputs/`). None: only `inputs/`. The socket is the user's own (0600)."""


class SubmitError(_Model):
    line: int
    column: int | None = None
    message: str


class SubmitResult(_Model):
    batch_id: str | None = None
    jobs: int = 0
    resumed: bool = False
    duplicate_of: str | None = None
    """Set when the content equals a batch already accepted and duplicates are skipped."""
    errors: list[SubmitError] = Field(default_factory=list)
    report: str | None = None
    warnings: list[str] = Field(default_factory=list)
    """Accepted, but worth knowing: e.g. the estimate exceeds the provider's balance."""


class CommandResult(_Model):
    """What a command changed: the ids it touched, and a sentence for people."""

    job_ids: list[int] = Field(default_factory=list)
    message: str = ""


class Problem(_Model):
    """Every non-2xx answer of the API has this body."""

    error: str
    detail: Any = None
