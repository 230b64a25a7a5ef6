"""Where everything lives under WFBATCH_HOME, and the lock that keeps one engine per HOME."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import stat
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
    def web(self) -> Path:
        """The web app's login token and where it listens (both 0600, in a 0700 folder)."""
        return self.root / "web"

    @property
    def inputs(self) -> Path:
        """Pictures prompt files may name by a path relative to it (`"image": "shoe.png"`)."""
        return self.root / "inputs"

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


class UnsafeLockFile(RuntimeError):
    """HOME/wfbatch.lock is a symlink or not a regular file: writing it could overwrite whatever it
    points at (any file, for a daemon run as root)."""


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
        handle = os.fdopen(self._open_regular(), "a+", encoding="utf-8")
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

    def _open_regular(self) -> int:
        # O_NOFOLLOW: a symlink planted as the lock must not make us truncate its target;
        # O_NONBLOCK: a FIFO planted there must not hang the start-up (fstat then refuses it).
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self._path, flags, 0o644)
        except OSError as error:
            problem = "is a symlink" if self._path.is_symlink() else f"cannot be opened ({error.strerror})"
            raise UnsafeLockFile(f"{self._path} {problem}: remove it (wfbatch makes its own)") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UnsafeLockFile(f"{self._path} is not a regular file: remove it (wfbatch makes its own)")
        os.set_blocking(fd, True)
        return fd

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
