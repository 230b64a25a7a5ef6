"""What changed since the screen was last refreshed, gathered from daemon events."""

from __future__ import annotations

from dataclasses import dataclass, field

from wfbatch.protocol import (
    EngineEvent,
    Event,
    InboxEvent,
    JobEvent,
    JobProgress,
    JobState,
    ProgressEvent,
    ResyncEvent,
)


@dataclass
class ChangeSet:
    job_states: dict[int, JobState] = field(default_factory=dict)
    """Latest known state of each job an event named (id → state)."""
    states: set[JobState] = field(default_factory=set)
    """States jobs entered; the tabs listing them need a reload."""
    status: bool = False
    """Counts, batches, providers or pauses changed: reload `/v1/status`."""
    everything: bool = False
    """Reload all (after a reconnect, or an event this screen does not understand)."""
    progress: dict[int, JobProgress | None] = field(default_factory=dict)
    """Latest progress of running jobs (id → progress): cells updated in place, nothing reloaded."""

    def __bool__(self) -> bool:
        return bool(self.job_states or self.states or self.status or self.everything or self.progress)

    def merge(self, other: ChangeSet) -> None:
        self.job_states.update(other.job_states)
        self.progress.update(other.progress)
        self.states |= other.states
        self.status = self.status or other.status
        self.everything = self.everything or other.everything

    def take(self) -> ChangeSet:
        """Hand over everything gathered so far and start empty again."""
        taken = ChangeSet(
            dict(self.job_states), set(self.states), self.status, self.everything, dict(self.progress)
        )
        self.job_states.clear()
        self.progress.clear()
        self.states.clear()
        self.status = self.everything = False
        return taken

    @classmethod
    def from_event(cls, event: Event) -> ChangeSet:
        if isinstance(event, JobEvent):
            # A job leaves some tab too; the tabs with its previous state are reloaded by the
            # caller when the row is on screen (it knows the old state), else by counts drifting.
            return cls(job_states={event.id: event.state}, states={event.state}, status=True)
        if isinstance(event, EngineEvent | ResyncEvent):
            return cls.all()
        if isinstance(event, ProgressEvent):
            return cls(progress={event.id: event.progress})  # steps change no count
        if isinstance(event, InboxEvent):
            return cls()  # a refused file changes no job, count or batch
        return cls(status=True)

    @classmethod
    def all(cls) -> ChangeSet:
        return cls(status=True, everything=True)
