"""Who listens on the socket: the client talks only to a daemon run by its own user.

A socket path is just a name. Anyone who could write to its folder (or squat a path the client
was pointed at) could listen there and receive the prompts of a `submit`. The kernel knows which
user opened the listening end (`SO_PEERCRED`), so every connection is checked before a byte of a
request goes out; the check lives in httpcore's network backend, which every connection passes.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpcore

from wfbatch.client.connect import PatientUnixBackend
from wfbatch.home import user_name

_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class UntrustedDaemon(PermissionError):
    """The process listening on the socket belongs to another user."""


def check_peer(sock: socket.socket, path: str, expected_uid: int | None = None) -> None:
    """Raise `UntrustedDaemon` unless the peer of the connected Unix socket `sock` runs as
    `expected_uid` (default: this process's effective uid; for root too: root talks only to a
    daemon of root, never by accident to another user's)."""
    expected = os.geteuid() if expected_uid is None else expected_uid
    peer_option = getattr(socket, "SO_PEERCRED", None)
    if peer_option is None:  # pragma: no cover - not Linux: fall back on who owns the socket file
        uid = Path(path).stat().st_uid
    else:
        _pid, uid, _gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, peer_option, _UCRED.size))
    if uid != expected:
        raise UntrustedDaemon(
            f"the process listening on {path} belongs to {user_name(uid)}, not to you "
            f"({user_name(expected)}): refusing to talk to it; check --socket and who can write "
            "to its folder"
        )


class PeerCheckingBackend(httpcore.AsyncNetworkBackend):
    """`check_peer` on every Unix socket connection `inner` (default: `PatientUnixBackend`) makes."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner or PatientUnixBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UntrustedDaemon(f"the wfbatch client only talks over a Unix socket, not to {host}:{port}")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_unix_socket(path, timeout=timeout, socket_options=socket_options)
        try:
            sock = stream.get_extra_info("socket")
            if not isinstance(sock, socket.socket):  # pragma: no cover - httpcore always has one
                raise UntrustedDaemon(f"cannot tell who listens on {path}")
            check_peer(sock, path)
        except BaseException:
            await stream.aclose()
            raise
        return stream

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
