"""Is the disk full? When writes fail for lack of space, the engine holds every job where it is and
probes now and then, instead of re-spawning jobs that fail at once (and burning their attempts)."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

PROBE_BYTES = 256 * 1024


def is_disk_full(error: BaseException) -> bool:
    """True for the errors that mean "no space left": SQLite's SQLITE_FULL, ENOSPC and EDQUOT."""
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
