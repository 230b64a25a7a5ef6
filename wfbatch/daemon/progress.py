"""Recent completions per batch, from the engine's events: the basis of each batch's ETA."""

from __future__ import annotations

import time
from collections import deque

from wfbatch.core.states import JobState
from wfbatch.protocol import Event, JobEvent

WINDOW_SECONDS = 300.0
MIN_SAMPLES = 2
MAX_SAMPLES = 50_000
FINISHED = frozenset({JobState.DONE, JobState.FAILED})


class CompletionTracker:
    def __init__(self, window: float = WINDOW_SECONDS) -> None:
        self._window = window
        self._finished: deque[tuple[float, str]] = deque(maxlen=MAX_SAMPLES)

    def observe(self, event: Event) -> None:
        if isinstance(event, JobEvent) and event.state in FINISHED and event.review is None:
            self._finished.append((time.monotonic(), event.batch_id))

    def eta(self, batch_id: str, remaining: int) -> float | None:
        """Seconds left at the batch's completion rate of the last few minutes; None when unknown."""
        if remaining <= 0:
            return 0.0
        now = time.monotonic()
        recent = [t for t, b in self._finished if b == batch_id and now - t <= self._window]
        if len(recent) < MIN_SAMPLES:
            return None
        span = max(now - recent[0], 1.0)
        return round(remaining / (len(recent) / span), 1)
