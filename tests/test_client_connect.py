"""A client meeting a full listen queue (a burst of connections past the daemon's backlog) waits
a little and connects once there is room, or says it could not connect: a real Unix socket that
listens with a queue of one and is not accepting."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_harness import short_tmpdir
from wfbatch.client import DaemonClient, DaemonUnavailable
from wfbatch.client.connect import PatientUnixBackend


@pytest.fixture
def full_queue() -> Iterator[tuple[socket.socket, Path, list[socket.socket]]]:
    """A listener whose queue is full (its one slot taken by a connection it has not accepted)."""
    path = short_tmpdir("wfc-") / "s.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(0)  # Linux queues backlog + 1 connections
    waiting: list[socket.socket] = []
    try:
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                sock.connect(str(path))
            except BlockingIOError:  # full: what a burst past the backlog meets
                sock.close()
                break
            waiting.append(sock)
        yield server, path, waiting
    finally:
        for sock in waiting:
            sock.close()
        server.close()
        shutil.rmtree(path.parent, ignore_errors=True)


async def test_a_connect_to_a_full_queue_waits_for_room(
    full_queue: tuple[socket.socket, Path, list[socket.socket]],
) -> None:
    server, path, _ = full_queue
    connecting = asyncio.create_task(PatientUnixBackend().connect_unix_socket(str(path), timeout=10))
    await asyncio.sleep(0)  # its first try has met the full queue: it now waits to try again
    assert not connecting.done()
    server.accept()[0].close()  # room for one
    stream = await asyncio.wait_for(connecting, 10)
    accepted, _ = server.accept()
    with contextlib.closing(accepted):
        await stream.write(b"ping", timeout=5)
        assert accepted.recv(4) == b"ping"
        accepted.sendall(b"pong")
        assert await stream.read(4, timeout=5) == b"pong"
    await stream.aclose()


async def test_a_queue_that_stays_full_is_a_daemon_that_does_not_answer(
    full_queue: tuple[socket.socket, Path, list[socket.socket]],
) -> None:
    _, path, _ = full_queue
    async with DaemonClient(path, timeout=8) as client:
        with pytest.raises(DaemonUnavailable):
            await client.health()
