"""Idle, half-sent, trickling and non-reading connections cannot take the daemon down or flood
its log (a real daemon, raw sockets)."""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Iterator

import pytest

from tests import deadlines
from tests.daemon_harness import DaemonProcess, jsonl, running_daemon
from wfbatch.daemon.connections import MAX_CONNECTIONS, REQUEST_TIMEOUT, WRITE_STALL_TIMEOUT

ENV = {"WFBATCH_INBOX__STABLE_SECONDS": "0.2", "WFBATCH_LOCAL__LATENCY_MAX": "0.01"}
IDLE = 300
HALF_SENT = 300  # together past MAX_CONNECTIONS: the oldest idle ones make room
assert IDLE + HALF_SENT > MAX_CONNECTIONS
JOBS = 100
PAGES = 60
"""A page of JOBS jobs is ~37 KB on the wire: PAGES of them are ~2 MB, ten times a default socket
send buffer (net.core.wmem_default, 208 KB), so a client that reads none of them stays stuck."""


def _connect(path: str, patience: float = 5.0) -> socket.socket:
    """Connect; while the daemon's listen queue is full (EAGAIN), retry for up to `patience` s."""
    deadline = time.monotonic() + deadlines.patience(patience)
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(path)
            return sock
        except BlockingIOError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
        except OSError:
            sock.close()
            raise


def _closed_by_peer(sock: socket.socket) -> bool:
    """True when the daemon has closed it (EOF or reset); drains anything it sent first."""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


@contextlib.contextmanager
def _sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    try:
        yield opened
    finally:
        for sock in opened:
            sock.close()


@pytest.fixture
def daemon() -> Iterator[DaemonProcess]:
    with running_daemon(env=ENV) as running:
        yield running


def test_idle_half_sent_and_trickling_connections_are_closed_and_the_daemon_keeps_working(
    daemon: DaemonProcess,
) -> None:
    path = str(daemon.socket)
    with _sockets() as idle, _sockets() as half, _sockets() as trickle:
        for _ in range(IDLE):
            idle.append(_connect(path))
        for _ in range(HALF_SENT):
            sock = _connect(path)
            sock.send(b"GET /v1/health HTTP/1.1\r\nHost: wfb")
            half.append(sock)
        trickle.append(_connect(path))
        request = b"GET /v1/health HTTP/1.1\r\nHost: wfbatch\r\nX-Pad: " + b"a" * 200 + b"\r\n\r\n"

        # The API and the inbox still work while all of them are open.
        daemon.wait_until(daemon.answers, 10, "the API to answer")
        daemon.drop("during.jsonl", jsonl("still taken", "from the inbox"))
        daemon.wait_for_jobs(lambda jobs: jobs["done"] == 2)

        # The trickler sends a byte every 0.1 s: it never completes within the deadline.
        everyone = idle + half + trickle
        deadline = time.monotonic() + deadlines.patience(REQUEST_TIMEOUT + 15)
        sent = 0
        while time.monotonic() < deadline:
            if trickle[0].fileno() >= 0 and sent < len(request):
                with contextlib.suppress(OSError):
                    trickle[0].send(request[sent : sent + 1])
                    sent += 1
            open_ones = [s for s in everyone if not _closed_by_peer(s)]
            if not open_ones:
                break
            select.select(open_ones[:500], [], [], 0.1)
        else:
            pytest.fail(f"{len(open_ones)} connections still open after {REQUEST_TIMEOUT + 15:.0f} s")
        assert sent < len(request), "the trickler was not cut off before finishing its request"

    assert daemon.answers()
    log = daemon.log().splitlines()
    dropped = [line for line in log if "connections dropped" in line]
    assert 1 <= len(dropped) <= 2, dropped  # counted, not one line per connection
    assert len(log) < 30, "\n".join(log)


def test_clients_that_never_read_do_not_hold_the_daemon(daemon: DaemonProcess) -> None:
    with _sockets() as sockets:
        # An event stream never read: the engine never waits for it, the batch finishes. Short
        # prompts: 2 KB ones made each job several times dearer (300 of them outlasted a 60 s wait
        # under load) and added nothing here, as no event carries a prompt.
        events = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sockets.append(events)
        events.connect(str(daemon.socket))
        events.sendall(b"GET /v1/events HTTP/1.1\r\nHost: wfbatch\r\n\r\n")
        daemon.drop("flood.jsonl", jsonl(*(f"never read {i}" for i in range(JOBS))))
        daemon.wait_for_jobs(lambda jobs: jobs["done"] >= JOBS, timeout=60)

        # Pages of jobs asked for again and again, never read: the send buffer fills and stays
        # full; the connection is dropped once it has been stuck for WRITE_STALL_TIMEOUT.
        pages = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sockets.append(pages)
        pages.connect(str(daemon.socket))
        pages.sendall(b"GET /v1/jobs?limit=500 HTTP/1.1\r\nHost: wfbatch\r\n\r\n" * PAGES)
        assert daemon.answers()
        daemon.wait_until(
            lambda: "not reading" in daemon.log(), WRITE_STALL_TIMEOUT + 20, "the stuck client to be dropped"
        )
        pages.setblocking(False)
        daemon.wait_until(lambda: _closed_by_peer(pages), 10, "the socket to be closed")
        assert daemon.answers()
    assert "Traceback" not in daemon.log()


class _FewDescriptors(DaemonProcess):
    """A daemon allowed FD_LIMIT open files, so a burst of connections runs it out."""

    FD_LIMIT = 45

    def command(self) -> list[str]:
        return ["prlimit", f"--nofile={self.FD_LIMIT}:{self.FD_LIMIT}", *super().command()]


def test_running_out_of_descriptors_is_one_warning_and_the_daemon_recovers() -> None:
    with running_daemon(env=ENV, start=False) as daemon:
        daemon.__class__ = _FewDescriptors
        daemon.start()
        with _sockets() as flood:
            for _ in range(200):
                with contextlib.suppress(BlockingIOError):  # the listen queue stayed full: fine
                    flood.append(_connect(str(daemon.socket), patience=0.2))
            daemon.wait_until(daemon.answers, 15, "the API to answer during the flood")
        daemon.drop("after.jsonl", jsonl("after the flood"))
        daemon.wait_for_jobs(lambda jobs: jobs["done"] == 1)
        log = daemon.log()
        assert log.count("cannot accept connections") <= 1, log
        assert "Traceback" not in log and len(log.splitlines()) < 15, log


def test_junk_requests_are_answered_without_a_log_line_each(daemon: DaemonProcess) -> None:
    for _ in range(100):
        with contextlib.closing(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)) as junk:
            junk.settimeout(5)
            junk.connect(str(daemon.socket))
            junk.sendall(b"\x00\x01 not http at all\r\n\r\n")
            assert junk.recv(64).startswith(b"HTTP/1.1 400")
    assert daemon.log().count("Invalid HTTP request") == 1, daemon.log()
