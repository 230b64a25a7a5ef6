"""The daemon's Unix socket, created by wfbatch itself: 0600 in a 0700 folder.

A stock ASGI server would create it 0666 (anyone on the machine could drive the daemon), so the
socket is bound here under a restrictive umask and handed to uvicorn already listening. The folder
must be this user's and writable by no one else: whoever can write to it can swap the socket for
their own and receive every prompt a client submits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
from pathlib import Path

from wfbatch.home import MAX_SOCKET_PATH_BYTES, user_name

log = logging.getLogger("wfbatch.daemon")

# As many waiting connections as the API serves at once (connections.MAX_CONNECTIONS): a burst of
# clients queues instead of being refused (the kernel may cap it lower: net.core.somaxconn).
BACKLOG = 512


class SocketPathError(RuntimeError):
    """The socket cannot be created at this path (too long, taken, not a socket)."""


def check_socket_path(path: Path) -> None:
    length = len(os.fsencode(path))
    if length > MAX_SOCKET_PATH_BYTES:
        raise SocketPathError(
            f"the socket path {path} is {length} bytes long, but a Unix socket path can have at most "
            f"{MAX_SOCKET_PATH_BYTES}: pass a shorter one with --socket (e.g. /tmp/wfbatch-$USER/d.sock), "
            "set socket_path in wfbatch.toml, or use a shorter WFBATCH_HOME"
        )


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def check_socket_folder(folder: Path, *, private_folder: bool) -> None:
    """Refuse a folder another user owns or can write to (see the module's doc). `private_folder`:
    the folder is wfbatch's own, so group/other bits are taken away rather than refused."""
    try:
        info = folder.stat()
    except OSError as error:
        raise SocketPathError(f"cannot use the socket folder {folder}: {error.strerror or error}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise SocketPathError(f"{folder} should be the socket's folder but is not a folder: "
                              "remove it or choose another --socket")
    me = os.geteuid()
    if info.st_uid != me:
        raise SocketPathError(
            f"the socket folder {folder} belongs to {user_name(info.st_uid)}, not to you "
            f"({user_name(me)}): that user could replace the socket; choose a folder of your own "
            "with --socket"
        )
    if info.st_mode & 0o022:
        if not private_folder:
            raise SocketPathError(
                f"the socket folder {folder} is writable by group or others (mode "
                f"{stat.S_IMODE(info.st_mode):o}), so they could replace the socket: use a folder "
                "only you can write to (e.g. /tmp/wfbatch-$USER/d.sock, created 0700)"
            )
        folder.chmod(0o700)
    elif private_folder and info.st_mode & 0o077:
        folder.chmod(0o700)


def bind_unix_socket(path: Path, *, private_folder: bool) -> socket.socket:
    """Bind and listen on `path`. Call only while holding the HOME lock: a socket file left by a
    dead daemon is removed here. `private_folder`: the folder is wfbatch's own, so it is made 0700
    even if it exists (a folder the user chose must already be private, unless it is created)."""
    check_socket_path(path)
    folder = path.parent
    if not os.path.lexists(folder):
        try:
            folder.mkdir(parents=True, mode=0o700)
        except OSError as error:
            reason = error.strerror or error
            raise SocketPathError(f"cannot create the socket folder {folder}: {reason}") from None
        folder.chmod(0o700)
    check_socket_folder(folder, private_folder=private_folder)
    try:
        existing = path.lstat()
    except FileNotFoundError:
        existing = None
    if existing is not None:
        if not stat.S_ISSOCK(existing.st_mode):
            raise SocketPathError(f"{path} exists and is not a socket: remove it or choose another --socket")
        if _answers(path):
            raise SocketPathError(f"another process already listens on {path}: choose another --socket")
        log.info("removing the stale socket %s left by a previous daemon", path)
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the socket is born 0600: no window where others could connect
    try:
        sock.bind(str(path))
    except OSError as error:
        sock.close()
        raise SocketPathError(f"cannot create the socket {path}: {error.strerror or error}") from error
    finally:
        os.umask(old_umask)
    path.chmod(0o600)
    sock.listen(BACKLOG)
    return sock


def remove_socket(path: Path, sock: socket.socket | None, inode: int | None) -> None:
    """Remove the socket file, only if it is still the one this process created."""
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()
    try:
        if inode is not None and path.lstat().st_ino == inode:
            path.unlink()
    except OSError:
        pass
