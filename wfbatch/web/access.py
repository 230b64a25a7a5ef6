"""Who may use the web app: a login token in a 0600 file, sessions, and the checks every request
passes (the Host header against DNS rebinding, Origin and a CSRF token on every state change).

The token is the key to the whole daemon (review, retry, cancel), so it lives only in HOME/web/token
and in the login URL `wfbatch web` prints; it is never logged. A login trades it for a session
cookie (HttpOnly, SameSite=Strict) and a redirect, so it leaves the address bar at once. Sessions
live in the daemon's memory: a restart asks for the login URL again (the token file stays)."""

from __future__ import annotations

import hmac
import json
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

TOKEN_FILE = "token"
SERVER_FILE = "server.json"
SESSION_COOKIE = "wfbatch_session"
CSRF_HEADER = "x-csrf-token"
MAX_SESSIONS = 64
"""Oldest sessions are forgotten beyond this: a loop of logins cannot grow the daemon's memory."""


class UnsafeWebFolder(RuntimeError):
    """HOME/web (or a file in it) belongs to someone else or others may read it."""


def _private_folder(folder: Path) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise UnsafeWebFolder(f"{folder} must be a folder of yours: remove it and start the daemon again")
    if stat.S_IMODE(info.st_mode) & 0o077:
        folder.chmod(0o700)


def _write_private(path: Path, text: str) -> None:
    """Write `path` born 0600 (no moment where others could read it), replacing it atomically."""
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    staging.replace(path)


def ensure_token(folder: Path) -> str:
    """The login token in `folder/token`, made once (random, 256 bits) and kept across restarts."""
    _private_folder(folder)
    path = folder / TOKEN_FILE
    try:
        info = path.lstat()
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        _write_private(path, token + "\n")
        return token
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        raise UnsafeWebFolder(f"{path} must be a regular file of yours: remove it and start the daemon again")
    if stat.S_IMODE(info.st_mode) & 0o077:
        path.chmod(0o600)
    token = path.read_text().strip()
    if len(token) < 32:
        token = secrets.token_urlsafe(32)
        _write_private(path, token + "\n")
    return token


def read_token(folder: Path) -> str | None:
    try:
        return (folder / TOKEN_FILE).read_text().strip() or None
    except OSError:
        return None


def write_server_file(folder: Path, *, pid: int, port: int) -> None:
    """Where this daemon's web app listens, for `wfbatch web` and the tests (port 0 picks any)."""
    _private_folder(folder)
    _write_private(folder / SERVER_FILE, json.dumps({"pid": pid, "host": "127.0.0.1", "port": port}) + "\n")


def read_server_file(folder: Path) -> dict[str, object] | None:
    try:
        data = json.loads((folder / SERVER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def remove_server_file(folder: Path, pid: int) -> None:
    data = read_server_file(folder)
    if data is not None and data.get("pid") == pid:
        (folder / SERVER_FILE).unlink(missing_ok=True)


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison: how long a refusal takes says nothing about the secret."""
    if not given:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


@dataclass
class Sessions:
    """Session id -> its CSRF token, in memory, oldest forgotten first."""

    _csrf: dict[str, str] = field(default_factory=dict)

    def create(self) -> tuple[str, str]:
        session, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self._csrf[session] = csrf
        while len(self._csrf) > MAX_SESSIONS:
            del self._csrf[next(iter(self._csrf))]
        return session, csrf

    def csrf_of(self, session: str | None) -> str | None:
        """The session's CSRF token, or None when `session` is not a live session."""
        if not session:
            return None
        for known, csrf in self._csrf.items():
            # Every id is compared (constant time each): a lookup would time the dict's hashing.
            if hmac.compare_digest(known.encode(), session.encode()):
                return csrf
        return None

    def end(self, session: str | None) -> None:
        if session:
            for known in list(self._csrf):
                if hmac.compare_digest(known.encode(), session.encode()):
                    del self._csrf[known]


def allowed_hosts(port: int) -> frozenset[str]:
    """The Host headers a browser sends for this server; anything else is a rebinding attempt."""
    return frozenset({f"127.0.0.1:{port}", f"localhost:{port}"})


def allowed_origins(port: int) -> frozenset[str]:
    return frozenset(f"http://{host}" for host in allowed_hosts(port))
