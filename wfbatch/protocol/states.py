"""Job states as the daemon's clients name, order and colour them: the one vocabulary the CLI and
the TUI take them from.

The states themselves are core's (`JobState`, re-exported: the protocol carries them as they are,
so a state added there reaches every client); this module adds how they are shown.
"""

from __future__ import annotations

from wfbatch.core.states import IN_FLIGHT_STATES, UNFINISHED_STATES, JobState, ReviewStatus

ORDER: tuple[JobState, ...] = (
    JobState.QUEUED,
    JobState.RETRYING,
    JobState.SUBMITTING,
    JobState.RUNNING,
    JobState.DONE,
    JobState.FAILED,
    JobState.CANCELED,
)
"""The order states are listed in wherever several are shown: waiting, in flight, finished."""

STYLE: dict[JobState, str] = {
    JobState.RETRYING: "yellow",
    JobState.SUBMITTING: "cyan",
    JobState.RUNNING: "cyan",
    JobState.DONE: "green",
    JobState.FAILED: "bold red",
    JobState.CANCELED: "red",
}
"""The rich style of each state wherever it is shown; a state without one is shown plain."""

OPEN: tuple[JobState, ...] = tuple(state for state in ORDER if state in UNFINISHED_STATES)
"""Work left (queued, retrying, in flight), in display order."""

IN_FLIGHT: tuple[JobState, ...] = tuple(state for state in ORDER if state in IN_FLIGHT_STATES)
"""Being executed: a cancel may still be charged for."""

RETRYABLE: tuple[JobState, ...] = (JobState.FAILED, JobState.CANCELED)
"""What a user retries or edits by hand (attempts reset)."""


__all__ = ["IN_FLIGHT", "OPEN", "ORDER", "RETRYABLE", "STYLE", "JobState", "ReviewStatus"]
