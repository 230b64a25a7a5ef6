"""Job and review states, and the transitions allowed between them."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    QUEUED = "queued"
    """Waiting for a slot under the provider's limits."""
    SUBMITTING = "submitting"
    """The start request is (or may be) on the wire; re-sent with the same key after a crash."""
    RUNNING = "running"
    """The provider accepted the job; we poll its remote id (or download its finished result)."""
    RETRYING = "retrying"
    """Waiting for `next_attempt_at` after a retryable error, then back to queued."""
    DONE = "done"
    """Images written to the batch folder."""
    FAILED = "failed"
    """Attempts used up, or a permanent error. Can be retried by hand."""
    CANCELED = "canceled"
    """Stopped by the user. Can be retried by hand."""


def empty_counts() -> dict[str, int]:
    """Jobs by state with every state present, all zero: the shape every count starts from."""
    return {state.value: 0 for state in JobState}


TERMINAL_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELED})
IN_FLIGHT_STATES = frozenset({JobState.SUBMITTING, JobState.RUNNING})
UNFINISHED_STATES = frozenset({JobState.QUEUED, JobState.RETRYING, JobState.SUBMITTING, JobState.RUNNING})
"""Work left: what `run` waits for, what a batch's progress counts down, what cancel can stop."""
WORKING_STATES = (JobState.QUEUED, JobState.SUBMITTING, JobState.RUNNING)
"""The states the engine moves a job out of when one run of it ends."""

ALLOWED_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset(
        {JobState.SUBMITTING, JobState.DONE, JobState.FAILED, JobState.CANCELED, JobState.RETRYING}
    ),
    JobState.SUBMITTING: frozenset(
        {
            JobState.RUNNING,
            JobState.DONE,
            JobState.RETRYING,
            JobState.FAILED,
            JobState.CANCELED,
            JobState.QUEUED,
        }
    ),
    JobState.RUNNING: frozenset(
        {JobState.DONE, JobState.RETRYING, JobState.FAILED, JobState.CANCELED, JobState.QUEUED}
    ),
    JobState.RETRYING: frozenset({JobState.QUEUED, JobState.FAILED, JobState.CANCELED}),
    JobState.DONE: frozenset(),
    JobState.FAILED: frozenset({JobState.QUEUED}),
    JobState.CANCELED: frozenset({JobState.QUEUED}),
}


class IllegalTransition(ValueError):
    """A job was asked to move between two states the state machine does not connect."""


def check_transition(current: JobState, target: JobState) -> None:
    if target not in ALLOWED_TRANSITIONS[current]:
        raise IllegalTransition(f"a job cannot go from {current} to {target}")


def sources_of(target: JobState, among: frozenset[JobState] | tuple[JobState, ...]) -> list[JobState]:
    """The states among `among` that may move to `target`, per the transition table: every
    conditional move in the store takes its `WHERE state IN (...)` from here."""
    return [state for state in JobState if state in among and target in ALLOWED_TRANSITIONS[state]]


def state_list(states: frozenset[JobState] | tuple[JobState, ...] | list[JobState]) -> str:
    """`'queued','running'` for SQL built from enum members (never from user input)."""
    return ",".join(f"'{state.value}'" for state in JobState if state in states)


class Execution(StrEnum):
    """What is known about the remote execution of a job's current generation (its idempotency key).

    It decides what money may still be spent: a job whose execution may exist is never sent a new
    key by a hand retry, never held back by a budget, and keeps its credit reservation until the
    provider says the execution ended."""

    NONE = "none"
    """No start of this generation reached the provider (or it refused it: 429, 402)."""
    MAYBE = "maybe"
    """A start was sent: the execution exists, or may (a lost answer), and may still charge."""
    ENDED = "ended"
    """Known to have ended without an image (a FAILED execution, a refused start): no charge."""
    FINISHED = "finished"
    """Finished with an image that was paid for (its charge is recorded)."""


LIVE_EXECUTIONS = frozenset({Execution.MAYBE, Execution.FINISHED})
"""Executions that are (or may be) paid for: a retry re-uses them instead of paying again."""


def execution_after(
    current: Execution, *, start_refused: bool, ended: bool, has_remote: bool, has_result: bool
) -> Execution:
    """What is known of an execution after one run of its job ended. `start_refused`: the provider
    refused a new start outright (429, 402, a bad key, a paused provider), so nothing was created —
    unless an id or result shows otherwise. `ended`: it said the execution ended without an image."""
    if current is Execution.MAYBE and start_refused and not has_remote and not has_result:
        return Execution.NONE
    if current is Execution.MAYBE and ended:
        return Execution.ENDED
    return current


def may_charge(execution: Execution) -> bool:
    """Whether a reservation must be kept for an execution in this state: exactly while it may
    still charge (a finished one's charge is recorded, not reserved)."""
    return execution is Execution.MAYBE


class ReviewStatus(StrEnum):
    PENDING = "pending"
    """New image, in pending-review/."""
    APPROVED = "approved"
    """Moved to approved/."""
    REJECTED = "rejected"
    """Moved to rejected/."""


class ErrorClass(StrEnum):
    RATE_LIMITED = "rate_limited"
    """429: slow the whole provider; costs the job no attempt."""
    OUT_OF_CREDITS = "out_of_credits"
    """402 (or a quota 429): pause the provider, keep jobs queued."""
    TRANSIENT = "transient"
    """5xx, timeouts, resets, malformed bodies: retry with backoff."""
    PERMANENT = "permanent"
    """400/403/404/422, content policy, a FAILED execution: fail at once."""
    AUTHENTICATION = "authentication"
    """401 (or a 403 naming the key): the account's key is wrong; pause the provider, keep jobs queued."""
    UNREACHABLE = "unreachable"
    """Several connection failures in a row: the provider is down or unreachable; pause and probe."""
