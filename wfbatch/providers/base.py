"""The provider interface: one small async protocol that fits synchronous APIs (the call returns the
image) and queue APIs (submit, then poll).

A provider never decides *when* to send: before every HTTP request it awaits `gate.acquire(kind)`,
which the engine's limiter implements, and it reports every response's status and headers with
`gate.observe(...)` so server-side rate-limit headers can correct the local estimate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from wfbatch.core.models import JobSpec
from wfbatch.core.progress import JobProgress
from wfbatch.providers.uploads import MemoryUploads, UploadLocks, UploadMemo


@dataclass(frozen=True)
class LikelyCost:
    """One image's likely charge as a range, and why it is one (`estimate()` stays the figure
    budgets reserve: the top, so a budget is never overrun)."""

    low: float
    high: float
    why: str
    """e.g. "quality auto: the server picks"."""


class RequestKind(StrEnum):
    START = "start"
    """A request that starts a (paid) execution."""
    POLL = "poll"
    """A status request for a started execution."""
    OTHER = "other"
    """Anything else sent to the provider's API (workflow graph, balance, estimates)."""


class RequestGate(Protocol):
    async def acquire(self, kind: RequestKind, priority: float = 0.0) -> None:
        """Wait until a request of this kind may be sent under the provider's limits."""

    def observe(self, kind: RequestKind, status: int, headers: Mapping[str, str]) -> None:
        """Feed the response's status and rate-limit headers back to the limiter. The kind says which
        limit the headers describe (a start's answer may count the execution window)."""


class UnlimitedGate:
    """A gate that never waits: for one-off calls outside the engine (e.g. a CLI probe)."""

    async def acquire(self, kind: RequestKind, priority: float = 0.0) -> None:
        return None

    def observe(self, kind: RequestKind, status: int, headers: Mapping[str, str]) -> None:
        return None


@dataclass(frozen=True)
class Image:
    """One generated image as received: raw bytes, their media type, and what the provider said."""

    data: bytes
    media_type: str
    metadata: dict[str, Any] = field(default_factory=dict)


RemoteHandle = dict[str, Any]
"""What a provider needs to find a submitted job again (Wireflow: `{"execution_id": …}`; a queue
API may need its status and result URLs). JSON-able: the engine stores it as given and hands it back
to `poll` and `cancel` unchanged, after a restart too."""


@dataclass(frozen=True)
class Submitted:
    """The provider accepted the job and will finish it later: poll `handle`. `remote_id` is the id
    people see (and the one an attempt is recorded under)."""

    remote_id: str
    handle: RemoteHandle
    http_status: int | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class Pending:
    """A poll found the execution still running."""

    remote_id: str
    status: str
    http_status: int | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class Finished:
    """The execution finished with images: either their URLs (download them promptly) or the bytes
    themselves (synchronous APIs and the local renderer)."""

    remote_id: str | None
    urls: tuple[str, ...] = ()
    images: tuple[Image, ...] = ()
    credits_used: float | None = None
    http_status: int | None = None
    request_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """What is stored in SQLite so a crash between finish and download re-downloads, never
        re-executes. Inline bytes are not stored: a provider that returns bytes is re-asked."""
        return {
            "remote_id": self.remote_id,
            "urls": list(self.urls),
            "credits_used": self.credits_used,
            "request_id": self.request_id,
            "metadata": self.metadata,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Finished:
        return cls(
            remote_id=data.get("remote_id"),
            urls=tuple(data.get("urls") or ()),
            credits_used=data.get("credits_used"),
            request_id=data.get("request_id"),
            metadata=dict(data.get("metadata") or {}),
        )


@dataclass(frozen=True)
class ServerState:
    """One of a provider's servers as it stands now (ComfyUI with several GPUs), for status and the
    TUI. `host` is host:port only: a URL may carry credentials or paths people should not see."""

    host: str
    up: bool
    down_since: float | None = None
    """Unix time of the first connection failure in the current outage."""
    jobs: int = 0
    """This provider's jobs on the server (queued or running there)."""


@dataclass(frozen=True)
class BatchLine:
    """One request of a remote batch: `custom_id` (the job's stable key) and its body."""

    custom_id: str
    body: dict[str, Any]


@dataclass(frozen=True)
class RemoteBatchInfo:
    """What the provider says of a remote batch (OpenAI's `Batch` object, providers.md §6)."""

    remote_id: str
    status: str
    """validating, in_progress, finalizing, completed, failed, expired, cancelling, cancelled."""
    total: int = 0
    completed: int = 0
    failed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    """None when absent (an empty string is absent too)."""
    errors: tuple[str, ...] = ()
    """Why the input file was rejected (status `failed`), one line each."""
    tag: str | None = None
    request_id: str | None = None

    @property
    def ended(self) -> bool:
        return self.status in ("completed", "failed", "expired", "cancelled")


@dataclass(frozen=True)
class LineResult:
    """One line of an output or error file, mapped back by `custom_id`: the image (`finished`) or
    what went wrong (`error`, a typed error: Permanent for a refusal, Transient for one that never
    ran, e.g. `batch_expired`)."""

    custom_id: str
    finished: Finished | None = None
    error: Exception | None = None
    never_ran: bool = False
    """The line was not attempted (expired or cancelled before it ran): nothing was charged."""
    paid: bool = False
    """The line was answered 2xx, so it was made and charged, but no image could be read from it
    (`error` says why): its charge is booked and its job fails; it is never sent again silently."""
    credits_used: float | None = None
    """What a `paid` line cost (None: unknown; the job's reservation, i.e. the estimate, is booked)."""


class RemoteBatchApi(Protocol):
    """A provider's batch API (OpenAI Batch): requests grouped into an uploaded file, run within a
    completion window at a discount. The engine's `RemoteBatches` drives it; every step's answer is
    committed before the next step depends on it."""

    max_lines: int
    max_file_bytes: int

    def line(self, spec: JobSpec, custom_id: str) -> BatchLine:
        """The request line for one job (Permanent when the provider would refuse it)."""
        ...

    def encode(self, lines: Sequence[BatchLine]) -> bytes:
        """The input file (JSONL)."""
        ...

    async def upload(self, tag: str, content: bytes) -> str:
        """Upload the input file (named after `tag`); its id."""
        ...

    async def find_file(self, tag: str) -> str | None:
        """The id of an input file uploaded for `tag` (an upload whose answer was lost)."""
        ...

    async def create(self, file_id: str, tag: str) -> RemoteBatchInfo:
        """Start the remote batch (not idempotent: look for `tag` with `find` first)."""
        ...

    async def find(self, tag: str) -> RemoteBatchInfo | None:
        """The remote batch carrying our `tag`, if one was created."""
        ...

    async def get(self, remote_id: str) -> RemoteBatchInfo: ...

    async def cancel(self, remote_id: str) -> RemoteBatchInfo: ...

    def results(self, file_id: str, specs: Mapping[str, JobSpec]) -> AsyncIterator[LineResult]:
        """The lines of an output or error file, streamed, each mapped to its outcome; `specs` are
        the batch's jobs by `custom_id` (lines naming anything else are skipped)."""
        ...

    def price(self, spec: JobSpec) -> float | None:
        """What one line of `spec` costs (the discounted price)."""
        ...


class Provider(Protocol):
    """What the engine drives. Traits that do not need an instance (synchronous or queued, cost
    unit, rate-limit header dialect, ...) live in the registry entry, not here."""

    name: str
    """The config name: `local`, `wireflow`, ..."""
    label: str
    """What a person should read next to results: says plainly what produced them."""

    async def submit(self, spec: JobSpec, idempotency_key: str) -> Submitted | Finished: ...

    async def poll(self, handle: RemoteHandle, *, priority: float = 0.0) -> Pending | Finished:
        """Ask how the execution stands. `priority` is passed to the gate: when requests are scarce,
        the polls most likely to find a finished image (the longest-running) go first."""
        ...

    async def download(self, finished: Finished) -> list[Image]: ...

    async def cancel(self, handle: RemoteHandle) -> bool:
        """Ask the provider to stop a submitted job; False where its API cannot."""
        ...

    async def reconcile(
        self, spec: JobSpec, idempotency_key: str, started_at: float | None
    ) -> Submitted | None:
        """Before a start whose answer was lost is sent again: find the execution it may have
        created (on the provider's side, since `started_at`, Unix seconds) and adopt it; None when
        there is none (or the API cannot tell), and the start is sent again."""
        ...

    async def balance(self) -> float | None:
        """The account's remaining credit / money; None where the API cannot tell."""
        ...

    async def estimate(self, spec: JobSpec) -> float | None:
        """What one image of `spec` will cost, in the provider's cost unit; None if unknown."""
        ...

    def likely_cost(self, spec: JobSpec) -> LikelyCost | None:
        """What one image of `spec` will likely be charged when that is a range rather than
        `estimate()`'s one figure (the server picks a quality): for `wfbatch plan`. None when the
        estimate is the charge."""
        ...

    def remote_batches(self) -> RemoteBatchApi | None:
        """The provider's batch API, where it has one and the settings allow it."""
        ...

    def servers(self) -> list[ServerState]:
        """Each server, where the provider spreads its jobs over several (empty otherwise)."""
        ...

    def progress(self, handle: RemoteHandle) -> JobProgress | None:
        """How far the execution of `handle` has come, from what the provider already knows (a
        socket's events, the last poll's logs): never a request, the engine asks often. None where
        unknown. A hint only: finishing is still `poll`'s answer."""
        ...

    async def aclose(self) -> None: ...


class ProviderDefaults:
    """Honest defaults for the optional members: a provider overrides what its API supports."""

    async def cancel(self, handle: RemoteHandle) -> bool:
        return False

    async def reconcile(
        self, spec: JobSpec, idempotency_key: str, started_at: float | None
    ) -> Submitted | None:
        return None

    async def balance(self) -> float | None:
        return None

    async def estimate(self, spec: JobSpec) -> float | None:
        return None

    def likely_cost(self, spec: JobSpec) -> LikelyCost | None:
        return None

    def remote_batches(self) -> RemoteBatchApi | None:
        return None

    def servers(self) -> list[ServerState]:
        return []

    def progress(self, handle: RemoteHandle) -> JobProgress | None:
        return None

    async def aclose(self) -> None:
        return None

    def keep_uploads_in(self, memo: UploadMemo) -> None:
        """Where to remember pictures uploaded to the provider's storage (the engine gives one in
        the store); not in the `Provider` protocol: the engine offers it where a provider has it."""
        self._upload_memo = memo

    @property
    def upload_locks(self) -> UploadLocks:
        """One upload at a time per picture (`UploadLocks`), for this provider."""
        locks: UploadLocks | None = getattr(self, "_upload_locks", None)
        if locks is None:
            locks = self._upload_locks = UploadLocks()
        return locks

    @property
    def upload_memo(self) -> UploadMemo:
        """The memo given by `keep_uploads_in`, else one in memory for this process."""
        memo: UploadMemo | None = getattr(self, "_upload_memo", None)
        if memo is None:
            memo = self._upload_memo = MemoryUploads()
        return memo
