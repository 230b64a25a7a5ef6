"""`wfbatch run`'s progress bar: on stderr whenever stderr is a terminal (with --json too: stdout
carries the JSON, stderr the bar), never on a pipe. Log lines are printed above the bar, the last
frame shows the true final counts, and a wait behind a rate limit is said, with its limit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from wfbatch.core.tasks import cancel_and_wait
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.protocol import JobState
from wfbatch.store import StoreApi

FRAME_SECONDS = 0.25
WAIT_WORTH_SAYING = 1.0
"""A start held back for less than this is ordinary pacing, not news."""


def wants_progress(stream: TextIO | None = None) -> bool:
    stream = stream if stream is not None else sys.stderr
    return stream.isatty()


@dataclass
class Frame:
    total: int
    finished: int
    running: int
    retrying: int
    failed: int
    queued: int
    eta_seconds: float | None
    waiting: str | None

    def detail(self) -> str:
        parts = [f"{self.running} running"]
        if self.retrying:
            parts.append(f"{self.retrying} retrying")
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.eta_seconds is not None:
            parts.append(f"ETA {_duration(self.eta_seconds)}")
        if self.waiting:
            parts.append(self.waiting)
        return ", ".join(parts)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


async def uploads_by_state(store: StoreApi, batch_ids: Sequence[str]) -> dict[str, int]:
    """These batches' uploads to the delivery bucket by state (pending, held, done)."""
    totals = {"pending": 0, "held": 0, "done": 0}
    for batch_id in batch_ids:
        for state, n in (await store.outbox.backlog(batch_id)).items():
            totals[state] = totals.get(state, 0) + n
    return totals


class RunProgress:
    """Reads the store and the engine's limiters each frame; `frame()` is what one frame shows."""

    def __init__(
        self, store: StoreApi, engine: Engine, batch_ids: list[str], now: Callable[[], float]
    ) -> None:
        self._store = store
        self._engine = engine
        self._batch_ids = batch_ids
        self._now = now
        self._started = now()
        self._first_finished: int | None = None

    async def frame(self) -> Frame:
        counts = await self._store.counters.counts(self._batch_ids)
        finished = counts[JobState.DONE] + counts[JobState.FAILED] + counts[JobState.CANCELED]
        queued = counts[JobState.QUEUED] + counts[JobState.RETRYING]
        if self._first_finished is None:
            self._first_finished = finished  # a resumed batch's earlier work says nothing of the pace
        total = sum(counts.values())
        running = counts[JobState.SUBMITTING] + counts[JobState.RUNNING]
        return Frame(
            total=total,
            finished=finished,
            running=running,
            retrying=counts[JobState.RETRYING],
            failed=counts[JobState.FAILED],
            queued=queued,
            eta_seconds=self._eta(finished, total),
            waiting=self._waiting() if queued else await self._uploading(running),
        )

    def _eta(self, finished: int, total: int) -> float | None:
        """From the pace seen in this run: finished jobs per second since it began."""
        done_here = finished - (self._first_finished or 0)
        elapsed = self._now() - self._started
        if done_here <= 0 or elapsed <= 0 or finished >= total:
            return None
        return (total - finished) * elapsed / done_here

    async def _uploading(self, running: int) -> str | None:
        """Once every job has ended, what the run still waits for: its uploads to the bucket."""
        if running:
            return None
        pending = (await uploads_by_state(self._store, self._batch_ids))["pending"]
        if not pending:
            return None
        wait = self._engine.settings.delivery.wait_at_exit
        return f"waiting for {pending} upload{'' if pending == 1 else 's'} (at most {wait:g}s)"

    def _waiting(self) -> str | None:
        """The longest wait for a start among the providers, with the limit behind it."""
        longest: tuple[float, str, str] | None = None
        for name, limiter in self._engine.pool.limiters.items():
            wait, why = limiter.next_start()
            if why is not None and wait >= WAIT_WORTH_SAYING and (longest is None or wait > longest[0]):
                longest = (wait, name, why)
        if longest is None:
            return None
        wait, name, why = longest
        return f"next start in {_duration(wait)}: {name} {why}"


@contextlib.asynccontextmanager
async def shown_progress(store: StoreApi, engine: Engine, batch_ids: list[str]) -> AsyncIterator[None]:
    """Draw the bar on stderr for the duration of the block, then one last frame with the final
    counts (the run may end between two frames: the bar must not freeze short of the end)."""
    console = Console(stderr=True)
    reader = RunProgress(store, engine, batch_ids, time.monotonic)
    progress = Progress(
        TextColumn("[bold]images"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    task = progress.add_task("images", total=None, detail="")

    async def draw() -> None:
        frame = await reader.frame()
        progress.update(task, total=frame.total, completed=frame.finished, detail=frame.detail())

    async def keep_drawing() -> None:
        while True:
            await draw()
            await asyncio.sleep(FRAME_SECONDS)

    root = logging.getLogger()
    saved = root.handlers[:]
    # Log lines go through the bar's console, which prints them above the bar instead of through it.
    handler = RichHandler(console=console, show_path=False, markup=False, rich_tracebacks=False)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    root.handlers = [handler]
    progress.start()
    drawing = asyncio.create_task(keep_drawing())
    try:
        yield
    finally:
        await cancel_and_wait(drawing)
        with contextlib.suppress(Exception):  # the store may be gone after a crash: the bar is extra
            await draw()
        progress.stop()
        root.handlers = saved
