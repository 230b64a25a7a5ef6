"""The protocol package's public surface: what the daemon and its clients may import from it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

import wfbatch.protocol as protocol
from wfbatch.core.states import JobState, ReviewStatus
from wfbatch.protocol import (
    BatchEvent,
    EngineEvent,
    Event,
    InboxEvent,
    JobEvent,
    JobProgress,
    JobSummary,
    ProgressEvent,
    ProviderEvent,
    RemoteBatchEvent,
    ResyncEvent,
    event_json,
    parse_event,
)
from wfbatch.tui.changes import ChangeSet

EXPORTED = {
    "API_VERSION", "MAX_ID", "MAX_PAGE", "Attempt", "BatchEvent", "BatchSummary", "BudgetRequest",
    "CancelRequest", "CommandResult", "Credits", "DeliveryBacklog", "DeliveryInfo", "EditRequest",
    "EngineEvent", "ErrorInfo", "Event", "DaemonInfo",
    "Health", "InboxEvent", "JobDetail", "JobEvent", "JobInput", "JobId", "JobSummary", "Page",
    "PauseRequest",
    "Problem", "JobProgress", "ProgressEvent",
    "ProviderEvent", "ProviderStatus", "RemoteBatchEvent", "RemoteBatchSummary", "ResyncEvent",
    "RetryRequest", "ReviewRequest", "Hold", "ServerStatus", "Status", "error_headline", "SubmitError",
    "AccountStatus", "SubmitRequest", "SubmitResult", "event_json", "parse_event", "routes",
    "JobState", "ReviewStatus", "states", "PriorityRequest", "WeightRequest",
}


def test_the_exported_names_are_pinned() -> None:
    assert set(protocol.__all__) == EXPORTED
    assert len(protocol.__all__) == len(EXPORTED)
    for name in protocol.__all__:
        assert hasattr(protocol, name), name


def test_the_clients_state_vocabulary_is_cores_every_state_once() -> None:
    """The CLI and the TUI list, count and colour states from `protocol.states`: a state added to
    core must be placed in its display order (else no client would ever show it)."""
    assert protocol.JobState is JobState and protocol.ReviewStatus is ReviewStatus
    assert sorted(protocol.states.ORDER) == sorted(JobState)
    assert len(protocol.states.ORDER) == len(set(protocol.states.ORDER))
    assert set(protocol.states.STYLE) <= set(JobState)
    assert set(protocol.states.OPEN) | set(protocol.states.IN_FLIGHT) | set(protocol.states.RETRYABLE) <= set(
        JobState
    )


def test_every_event_kind_survives_the_wire() -> None:
    events: list[Event] = [
        JobEvent(id=7, batch_id="b1", state=JobState.DONE, review=ReviewStatus.APPROVED, file="a.png"),
        BatchEvent(event="held", batch_id="b1", reason="budget reached", provider="local"),
        ProviderEvent(event="paused", provider="local", reason="out of credits", details={"required": 3}),
        EngineEvent(event="reloaded", changed=["limits"]),
        InboxEvent(event="rejected", file="bad.txt", errors=2, first="line 1: empty"),
        RemoteBatchEvent(id=1, batch_id="b1", provider="openai", step="started", remote_id="batch_1",
                         status="in_progress", lines=20, completed=12),
        ResyncEvent(dropped=12),
        ProgressEvent(id=7, batch_id="b1", progress=JobProgress(step=12, steps=20, node="KSampler")),
        ProgressEvent(id=7, batch_id="b1", progress=None),
    ]
    for event in events:
        assert parse_event(event_json(event)) == event


def test_a_kind_this_version_does_not_know_is_skipped_and_a_broken_known_kind_is_refused() -> None:
    assert parse_event('{"kind": "weather", "sunny": true}') is None
    with pytest.raises(ValidationError):
        parse_event('{"kind": "job", "id": 1, "batch_id": "b", "state": "melted"}')


def test_the_tui_reloads_everything_after_a_resync_and_moves_the_row_on_a_job_event() -> None:
    assert ChangeSet.from_event(ResyncEvent(dropped=3)) == ChangeSet.all()
    changes = ChangeSet.from_event(JobEvent(id=4, batch_id="b", state=JobState.FAILED))
    assert changes.job_states == {4: JobState.FAILED} and changes.states == {"failed"} and changes.status
    assert not ChangeSet.from_event(InboxEvent(event="rejected", file="x.txt", errors=1, first="line 1"))
    # A remote batch's progress is the batch row's: the status is read again.
    progress = RemoteBatchEvent(id=1, batch_id="b", provider="openai", step="started", completed=3, lines=9)
    assert ChangeSet.from_event(progress).status


def test_progress_updates_its_cells_and_reloads_nothing() -> None:
    progress = JobProgress(step=3, steps=20, node="KSampler", phase="running")
    changes = ChangeSet.from_event(ProgressEvent(id=9, batch_id="b", progress=progress))
    assert changes and changes.progress == {9: progress}
    assert not (changes.status or changes.everything or changes.job_states or changes.states)
    later = ChangeSet.from_event(ProgressEvent(id=9, batch_id="b", progress=None))
    changes.merge(later)
    assert changes.take().progress == {9: None} and not changes


def test_progress_is_an_additive_field_both_ways() -> None:
    """API_VERSION stays 1: an older daemon's job has no `progress` (None here), and an older
    client ignores the field and the `progress` event kind (extra fields and unknown kinds are)."""
    old = {"id": 1, "batch_id": "b", "index": 0, "line": 1, "state": "running", "review": "pending",
           "prompt": "p", "provider": "comfyui", "attempts": 1, "updated_at": "2026-01-01T00:00:00Z"}
    assert JobSummary.model_validate(old).progress is None
    new = JobSummary.model_validate({**old, "progress": {"step": 2, "steps": 8, "node": "KSampler",
                                                        "eta": 3}})
    assert new.progress == JobProgress(step=2, steps=8, node="KSampler")
    assert protocol.API_VERSION == 1
