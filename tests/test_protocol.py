"""The protocol package's public surface: what the daemon and its clients may import from it."""

from __future__ import annotations

import wfbatch.protocol as protocol

EXPORTED = {
    "API_VERSION", "MAX_ID", "MAX_PAGE", "Attempt", "BatchEvent", "BatchSummary", "BudgetRequest",
    "CancelRequest", "CommandResult", "Credits", "EditRequest", "EngineEvent", "ErrorInfo", "Event",
    "Health", "InboxEvent", "JobDetail", "JobEvent", "JobId", "JobSummary", "Page", "PauseRequest",
    "Problem", "ProviderEvent", "ProviderStatus", "ResyncEvent", "RetryRequest", "ReviewRequest",
    "Status", "SubmitError", "SubmitRequest", "SubmitResult", "event_json", "parse_event", "routes",
}


def test_the_exported_names_are_pinned() -> None:
    assert set(protocol.__all__) == EXPORTED
    assert len(protocol.__all__) == len(EXPORTED)
    for name in protocol.__all__:
        assert hasattr(protocol, name), name
