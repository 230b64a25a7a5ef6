"""A real HTTP server on loopback that records every request it gets (a webhook receiver, or the
"S3" a dropped file would like the daemon to sign requests for), for tests only."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Recorder:
    """Answers every request with `status` (and `location`, for a redirect) and records it."""

    def __init__(self, status: int = 200, location: str | None = None) -> None:
        self.requests: list[Recorded] = []
        self.status = status
        self.location = location
        self.got_one = threading.Event()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                recorder.requests.append(Recorded(self.command, self.path, headers, body))
                recorder.got_one.set()
                self.send_response(recorder.status)
                if recorder.location is not None:
                    self.send_header("location", recorder.location)
                self.send_header("content-length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def messages(self, kind: str | None = None) -> list[dict[str, Any]]:
        found = [json.loads(request.body) for request in self.requests if request.method == "POST"]
        return [m for m in found if kind is None or m.get("type") == kind]


@contextmanager
def recorder(status: int = 200, location: str | None = None) -> Iterator[Recorder]:
    server = Recorder(status, location)
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
