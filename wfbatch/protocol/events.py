"""What `/v1/events` carries: one model per kind, told apart by `kind`.

The engine emits these very models and the daemon serialises them as they are (`event: <kind>`,
`data: <the model as JSON>`); clients parse them back with `parse_event`. Every event that names a
batch says `batch_id`, every one that gives a cause says `reason`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from wfbatch.core.progress import JobProgress
from wfbatch.core.states import JobState, ReviewStatus


class _Event(BaseModel):
    # Frozen: one event object goes to every subscriber. Extra fields are ignored so a newer
    # daemon may add some.
    model_config = ConfigDict(extra="ignore", frozen=True)


class JobEvent(_Event):
    """A job changed state, or was reviewed (then `review` and `file` are set)."""

    kind: Literal["job"] = "job"
    id: int
    batch_id: str
    state: JobState
    review: ReviewStatus | None = None
    file: str | None = None
    """The image's path relative to the batch's folder, after a review moved it."""


class ProgressEvent(_Event):
    """A running job's progress changed (ComfyUI's sampler steps): the latest only, at most about
    two a second per job, never stored. `progress` None: no longer known."""

    kind: Literal["progress"] = "progress"
    id: int
    batch_id: str
    progress: JobProgress | None = None


class BatchEvent(_Event):
    """A batch was created (or found to duplicate one), paused, resumed, given a budget, a priority
    or a weight, or held back by its budget (`held`, with the `reason` and the `provider` whose job
    waits)."""

    kind: Literal["batch"] = "batch"
    event: Literal["created", "duplicate", "paused", "resumed", "budget", "held", "priority", "weight"]
    batch_id: str
    name: str | None = None
    source_name: str | None = None
    jobs: int | None = None
    budget: float | None = None
    reason: str | None = None
    provider: str | None = None
    priority: int | None = None
    weight: float | None = None


class ProviderEvent(_Event):
    """A provider was paused (`reason`, and the figures in `details` as in `ProviderStatus`),
    resumed (with its `balance` when one was read), or blocked for `blocked_for` seconds."""

    kind: Literal["provider"] = "provider"
    event: Literal["paused", "resumed", "blocked"]
    provider: str
    reason: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    balance: float | None = None
    blocked_for: float | None = None


class EngineEvent(_Event):
    """The stream opened (`connected`), everything was paused or resumed, or the settings were
    reloaded (`changed` names what changed)."""

    kind: Literal["engine"] = "engine"
    event: Literal["connected", "paused", "resumed", "reloaded"]
    reason: str | None = None
    changed: list[str] = Field(default_factory=list)


class InboxEvent(_Event):
    """A file dropped in the inbox was refused: `errors` problems, the `first` of them quoted."""

    kind: Literal["inbox"] = "inbox"
    event: Literal["rejected"]
    file: str
    errors: int
    first: str


class RemoteBatchEvent(_Event):
    """A remote batch (batch mode: OpenAI's Batch API) moved on: gathered, uploaded, started, polled
    (`status` and `completed`/`failed` are the provider's `request_counts`), or closed (`reason`)."""

    kind: Literal["remote_batch"] = "remote_batch"
    id: int
    batch_id: str
    provider: str
    step: str
    remote_id: str | None = None
    status: str | None = None
    lines: int = 0
    completed: int = 0
    failed: int = 0
    reason: str | None = None


class ResyncEvent(_Event):
    """This subscriber fell behind and `dropped` events were lost: re-read what you show."""

    kind: Literal["resync"] = "resync"
    dropped: int


Event = Annotated[
    JobEvent
    | ProgressEvent
    | BatchEvent
    | ProviderEvent
    | EngineEvent
    | InboxEvent
    | RemoteBatchEvent
    | ResyncEvent,
    Field(discriminator="kind"),
]
_EVENT: TypeAdapter[Event] = TypeAdapter(Event)


def event_json(event: Event) -> str:
    """The `data` of an event on the wire (unset fields left out)."""
    return event.model_dump_json(exclude_none=True)


def parse_event(data: str | bytes) -> Event | None:
    """The event in one `data` line; None for a kind this version does not know (a newer daemon
    may add kinds). An event of a known kind that does not fit its model raises ValidationError."""
    try:
        return _EVENT.validate_json(data)
    except ValidationError as error:
        if any(problem["type"] == "union_tag_invalid" for problem in error.errors()):
            return None
        raise
