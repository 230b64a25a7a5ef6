"""Where everything lives under WFBATCH_HOME, and the lock that keeps one engine per HOME."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

# A Unix socket path is limited by sockaddr_un.sun_path (108 bytes on Linux, including the NUL).
MAX_SOCKET_PATH_BYTES = 107


def user_name(uid: int) -> str:
    """`uid 1000 (alice)`, for messages about who owns something."""
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


@dataclass(frozen=True)
class HomeLayout:
    root: Path

    @property
    def db(self) -> Path:
        return self.root / "wfbatch.db"

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    @property
    def rejected(self) -> Path:
        return self.root / "rejected"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def lock_file(self) -> Path:
        return self.root / "wfbatch.lock"

    def ensure(self) -> None:
        for folder in (self.root, self.inbox, self.archive, self.rejected, self.cache, self.output):
            folder.mkdir(parents=True, exist_ok=True)

    def default_socket_path(self) -> Path:
        """`$XDG_RUNTIME_DIR/wfbatch/<hash of HOME>.sock` when a runtime dir exists, else in HOME."""
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        if runtime and Path(runtime).is_dir():
            import hashlib

            tag = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:12]
            return Path(runtime) / "wfbatch" / f"{tag}.sock"
        return self.root / "run" / "wfbatch.sock"


class HomeLocked(RuntimeError):
    """Another wfbatch engine (a daemon or a `wfbatch run`) already works on this HOME."""

    def __init__(self, holder: dict[str, Any]) -> None:
        self.holder = holder
        pid = holder.get("pid", "?")
        what = holder.get("what", "wfbatch")
        socket = holder.get("socket")
        where = f", socket {socket}" if socket else ""
        super().__init__(f"another {what} (pid {pid}{where}) is already running on this HOME")


class HomeLock:
    """An exclusive `flock` on HOME/wfbatch.lock, released by the OS if the process dies."""

    def __init__(self, layout: HomeLayout) -> None:
        self._path = layout.lock_file
        self._handle: IO[str] | None = None

    def acquire(self, what: str, socket: Path | None = None) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        handle = self._path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            try:
                holder = json.loads(handle.read() or "{}")
            except json.JSONDecodeError:
                holder = {}
            handle.close()
            raise HomeLocked(holder) from None
        handle.seek(0)
        handle.truncate()
        handle.write(
            json.dumps({"pid": os.getpid(), "what": what, "socket": str(socket) if socket else None})
        )
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
