"""Atomic file writes: readers see the old file or the new one, never half of either.

The daemon, the TUI's viewers and the user's own tools read the batch folder while the engine
writes to it, and a crash can happen at any moment; so every file is written to a temporary
sibling, flushed to disk, then renamed over its final name (a rename is atomic within one
filesystem, which is why the temporary file lives in the destination's own folder).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from wfbatch.core.names import NAME_MAX, fit_name

_TEMP_EXTRA_BYTES = len(".") + len(".123456789abc.tmp")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, creating missing parent folders.

    The temporary file is a dotfile ending in `.tmp`, which the inbox watcher and most tools
    ignore; it is removed if anything fails. The final file gets the same permissions a plain
    `open(path, "wb")` would give it (the process umask applies).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # Cut so that a name already near NAME_MAX still has a temporary sibling that can exist.
    short = fit_name(path.name, max_bytes=NAME_MAX - _TEMP_EXTRA_BYTES)
    temp_path = path.with_name(f".{short}.{secrets.token_hex(6)}.tmp")
    # os.open with 0o666 lets the umask decide the mode; tempfile.mkstemp would force 0600.
    fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as temp_file:
            temp_file.write(data)
            temp_file.flush()
            os.fsync(temp_file.fileno())
        temp_path.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp_path.unlink()
        raise
    _fsync_directory(path.parent)


def atomic_write_text(path: Path, text: str, encoding: str = "utf-8") -> None:
    """Write `text` to `path` atomically (UTF-8 by default); see `atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode(encoding))


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself survive a power loss. Best effort: some platforms and
    # filesystems cannot open or fsync a directory, and the data is already safe on disk.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
