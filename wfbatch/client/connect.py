"""Connecting to the daemon's Unix socket, with a little patience.

The daemon's listen queue holds `BACKLOG` connections not yet accepted. A burst of clients beyond
it (a script starting hundreds of `wfbatch status`, a load test) finds it full: a non-blocking
connect then fails with EAGAIN (ECONNREFUSED on the BSDs and macOS), and anyio's own connect spins
on it until its timeout, then raises a timeout the client does not recognise as "no daemon". Here
such a connect is tried again after a short pause that doubles (10 ms up to 200 ms), for at most
CONNECT_PATIENCE seconds; then the client is told it could not connect. On Linux ECONNREFUSED
means nobody listens (a daemon killed with its socket left behind): said at once, not retried.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterable
from typing import Any

import anyio
import anyio.abc
import httpcore

# httpcore's own stream over an anyio stream: the same reads, writes and error mapping as a
# connection it made itself.
from httpcore._backends.anyio import AnyIOStream

CONNECT_PATIENCE = 2.0
# What a full listen queue looks like to a non-blocking connect on this system.
_QUEUE_FULL: tuple[type[OSError], ...] = (
    (BlockingIOError,) if sys.platform == "linux" else (BlockingIOError, ConnectionRefusedError)
)
FIRST_PAUSE = 0.01
MAX_PAUSE = 0.2


class PatientUnixBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend for Unix sockets only: a connect meeting a full queue waits a little."""

    def __init__(self, patience: float = CONNECT_PATIENCE) -> None:
        self._patience = patience

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        patience = self._patience if timeout is None else min(self._patience, timeout)
        sock = await _connect(path, patience)
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
            stream = await anyio.abc.UNIXSocketStream.from_socket(sock)
        except BaseException:
            sock.close()
            raise
        return AnyIOStream(stream)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


async def _connect(path: str, patience: float) -> socket.socket:
    deadline = time.monotonic() + patience
    pause = FIRST_PAUSE
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(path)
        except _QUEUE_FULL as error:
            sock.close()
            if time.monotonic() + pause > deadline:
                why = f"its listen queue stayed full for {patience:g} s"
                raise httpcore.ConnectError(f"cannot connect to {path}: {why}") from error
        except OSError as error:
            sock.close()
            raise httpcore.ConnectError(f"cannot connect to {path}: {error.strerror or error}") from error
        except BaseException:
            sock.close()
            raise
        else:
            return sock
        await anyio.sleep(pause)
        pause = min(pause * 2, MAX_PAUSE)
