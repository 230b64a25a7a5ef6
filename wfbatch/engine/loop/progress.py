"""The latest progress of each job being polled, in memory only: progress is a hint that changes
many times a second, so it is never written to SQLite. While a job's execution is polled, its
provider is asked (`Provider.progress`, a memory read, no request) every `SAMPLE_PERIOD`; a change
is published as one `ProgressEvent`, so a job sends at most 1/SAMPLE_PERIOD events a second however
fast its steps go, and a job whose provider tells nothing sends none."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from wfbatch.core.progress import JobProgress
from wfbatch.core.tasks import cancel_and_wait
from wfbatch.engine.events import EventSink, discard
from wfbatch.protocol import ProgressEvent
from wfbatch.providers.base import Provider, RemoteHandle

log = logging.getLogger("wfbatch.engine")

SAMPLE_PERIOD = 0.5


@dataclass(frozen=True)
class _Watched:
    job_id: int
    batch_id: str
    provider: Provider
    handle: RemoteHandle


class ProgressBoard:
    def __init__(self, emit: EventSink = discard, *, period: float = SAMPLE_PERIOD) -> None:
        self._emit = emit
        self._period = period
        self._watched: dict[int, _Watched] = {}
        self._latest: dict[int, JobProgress] = {}
        self._task: asyncio.Task[None] | None = None
        self._failed_once = False

    def of(self, job_id: int) -> JobProgress | None:
        return self._latest.get(job_id)

    @contextlib.contextmanager
    def watching(
        self, job_id: int, batch_id: str, provider: Provider, handle: RemoteHandle | None
    ) -> Iterator[None]:
        """Sample the job's progress while the block runs (its polling); forget it after."""
        if handle is None:
            yield
            return
        self._watched[job_id] = _Watched(job_id, batch_id, provider, handle)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="progress")
        try:
            yield
        finally:
            self._watched.pop(job_id, None)
            self._latest.pop(job_id, None)

    def sample(self) -> None:
        """One look at every watched job; an event for each whose progress changed."""
        for watched in list(self._watched.values()):
            try:
                progress = watched.provider.progress(watched.handle)
            except Exception:  # a provider's bug costs its progress, never the job
                if not self._failed_once:
                    self._failed_once = True
                    log.exception("reading the progress of job %d failed", watched.job_id)
                progress = None
            if progress == self._latest.get(watched.job_id):
                continue
            if progress is None:
                self._latest.pop(watched.job_id, None)
            else:
                self._latest[watched.job_id] = progress
            self._emit(ProgressEvent(id=watched.job_id, batch_id=watched.batch_id, progress=progress))

    async def _run(self) -> None:
        # Real time, not the engine's clock: this paces a display, and a test's manual clock
        # would turn it into a busy loop. Ends by itself once nothing is watched.
        while self._watched:
            self.sample()
            await asyncio.sleep(self._period)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
