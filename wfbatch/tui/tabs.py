"""The job tabs: which states (and review status) each one lists, and its key."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class JobTab(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    FAILED = "failed"
    DONE = "done"
    REVIEW = "review"


@dataclass(frozen=True)
class TabSpec:
    tab: JobTab
    key: str
    title: str
    states: tuple[str, ...]
    review: str | None = None


TAB_SPECS: dict[JobTab, TabSpec] = {
    JobTab.QUEUED: TabSpec(JobTab.QUEUED, "1", "Queued", ("queued", "retrying")),
    JobTab.RUNNING: TabSpec(JobTab.RUNNING, "2", "Running", ("submitting", "running")),
    # Canceled jobs sit with the failures: both are retried by hand.
    JobTab.FAILED: TabSpec(JobTab.FAILED, "3", "Failed", ("failed", "canceled")),
    JobTab.DONE: TabSpec(JobTab.DONE, "4", "Done", ("done",)),
    JobTab.REVIEW: TabSpec(JobTab.REVIEW, "5", "Review", ("done",), review="pending"),
}


def tabs_touched_by(states: set[str]) -> set[JobTab]:
    """The tabs whose rows may change when jobs enter or leave these states."""
    return {spec.tab for spec in TAB_SPECS.values() if set(spec.states) & states}
