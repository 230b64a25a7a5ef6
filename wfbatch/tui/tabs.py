"""The job tabs: which states (and review status) each one lists, and its key."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from wfbatch.protocol.states import JobState, ReviewStatus


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
    states: tuple[JobState, ...]
    review: ReviewStatus | None = None


TAB_SPECS: dict[JobTab, TabSpec] = {
    JobTab.QUEUED: TabSpec(JobTab.QUEUED, "1", "Queued", (JobState.QUEUED, JobState.RETRYING)),
    JobTab.RUNNING: TabSpec(JobTab.RUNNING, "2", "Running", (JobState.SUBMITTING, JobState.RUNNING)),
    # Canceled jobs sit with the failures: both are retried by hand.
    JobTab.FAILED: TabSpec(JobTab.FAILED, "3", "Failed", (JobState.FAILED, JobState.CANCELED)),
    JobTab.DONE: TabSpec(JobTab.DONE, "4", "Done", (JobState.DONE,)),
    JobTab.REVIEW: TabSpec(JobTab.REVIEW, "5", "Review", (JobState.DONE,), review=ReviewStatus.PENDING),
}
