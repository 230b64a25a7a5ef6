"""Is the disk full? When writes fail for lack of space, the engine holds every job where it is and
probes now and then, instead of re-spawning jobs that fail at once (and burning their attempts)."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sqlite3
from pathlib import Path

from wfbatch.engine.clock import Clock
from wfbatch.engine.events import EventSink
from wfbatch.protocol import EngineEvent
from wfbatch.store import StoreApi

log = logging.getLogger("wfbatch.engine")

PROBE_BYTES = 256 * 1024
BACKOFF_MIN = 1.0
BACKOFF_MAX = 30.0


DISK_FULL_SQLSTATE = "53100"
"""PostgreSQL's disk_full: the server's disk, when the store is a PostgreSQL database."""


def is_disk_full(error: BaseException) -> bool:
    """True for the errors that mean "no space left": SQLite's SQLITE_FULL, PostgreSQL's disk_full
    (read from the error's `sqlstate`, so the engine never imports the driver), ENOSPC and EDQUOT."""
    if getattr(error, "sqlstate", None) == DISK_FULL_SQLSTATE:
        return True
    if isinstance(error, sqlite3.Error):
        return getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "is full" in str(error)
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    return False


def probe_free_space(folder: Path) -> None:
    """Write and remove a file as large as a small image under `folder`; raises OSError (ENOSPC)
    while there is no room for one."""
    probe = folder / f".wfbatch-space-probe-{os.getpid()}"
    try:
        with probe.open("wb") as handle:
            handle.write(b"\0" * PROBE_BYTES)
            handle.flush()
            os.fsync(handle.fileno())
    finally:
        probe.unlink(missing_ok=True)


class StorageHealth:
    """Whether writes fail for lack of space: said once, then probed with backoff until a real
    write (a SQLite commit that needs fresh pages, and a file as large as a small image) succeeds."""

    def __init__(self, store: StoreApi, folder: Path, clock: Clock, events: EventSink) -> None:
        self._store = store
        self._folder = folder
        self._clock = clock
        self._emit = events
        self.problem: str | None = None
        self._backoff = BACKOFF_MIN

    def failed(self, error: BaseException) -> None:
        if self.problem is not None:
            return
        self.problem = (
            f"disk full: {error}; nothing runs until space is freed under {self._folder},"
            " then work resumes by itself"
        )
        log.error("%s", self.problem)
        self._emit(EngineEvent(event="paused", reason=self.problem))

    def worked(self) -> None:
        """A job ran through: the next full disk starts probing from the shortest wait again."""
        self._backoff = BACKOFF_MIN

    async def probe(self) -> bool:
        """Wait, then try a real write; True once there is room again."""
        await self._clock.sleep(self._backoff)
        self._backoff = min(BACKOFF_MAX, self._backoff * 2)
        try:
            await self._store.probe_write()
            await asyncio.to_thread(probe_free_space, self._folder)
        except Exception as error:
            if not is_disk_full(error):
                raise
            return False
        log.info("disk space is back: resuming")
        self.problem = None
        self._emit(EngineEvent(event="resumed"))
        return True
