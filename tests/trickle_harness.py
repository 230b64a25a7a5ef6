"""A loopback HTTP server that takes every request and then answers one byte at a time — the
receiver or bucket that never times out a per-read timeout — until `trickle` is turned off, when
it answers at once (200, empty body). Raw sockets, one thread per connection; closing the server
cuts every connection it holds.

    with trickling_server() as slow:
        ... point a webhook or an S3 endpoint at slow.url ...
        slow.wait_for_requests(1)
        slow.trickle = False    # from now on, answer normally
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

TRICKLE_EVERY = 0.2
"""Seconds between two bytes of a trickled answer: far below any per-read timeout."""
WAIT_DEADLINE = 20.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class TricklingServer:
    def __init__(self) -> None:
        self.trickle = True
        self.requests: list[Request] = []
        self.answered: list[Request] = []
        """Requests answered at once (after `trickle` was turned off)."""
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closed = threading.Event()
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def start(self) -> None:
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def wait_for_requests(self, count: int, timeout: float = WAIT_DEADLINE) -> list[Request]:
        """Block until `count` requests have arrived (bounded: AssertionError after `timeout`)."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"{len(self.requests)} requests arrived, not {count}")
            return list(self.requests)

    def wait_for_answered(self, count: int, timeout: float = WAIT_DEADLINE) -> list[Request]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.answered) >= count, timeout):
                raise AssertionError(f"{len(self.answered)} requests answered, not {count}")
            return list(self.answered)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while not self._closed.is_set():
                request = _read_request(conn, go_ahead=not self.trickle)
                if request is None:
                    return
                with self._changed:
                    self.requests.append(request)
                    self._changed.notify_all()
                if self.trickle:
                    self._trickle(conn)
                    return
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                with self._changed:
                    self.answered.append(request)
                    self._changed.notify_all()

    def _trickle(self, conn: socket.socket) -> None:
        """Headers at once, then a body that never ends: one byte every TRICKLE_EVERY seconds."""
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: 100000\r\n\r\n")
        while not self._closed.wait(TRICKLE_EVERY):
            conn.sendall(b" ")


def _read_request(conn: socket.socket, *, go_ahead: bool) -> Request | None:
    """One request. A body announced with `Expect: 100-continue` is read only with `go_ahead`;
    without it the answer that follows (the trickle) is final, as a server refusing the body's."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, path, _ = request_line.split(" ", 2)
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    if headers.get("expect", "").lower() == "100-continue":
        if not go_ahead:
            return Request(method, path, headers, body)
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return Request(method, path, headers, body)


@contextlib.contextmanager
def trickling_server() -> Iterator[TricklingServer]:
    server = TricklingServer()
    server.start()
    try:
        yield server
    finally:
        server.close()

