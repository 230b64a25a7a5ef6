"""A real daemon serving the web app (`--web`, port 0: any free one), and an httpx client over
loopback TCP that logs in with the token the daemon wrote, as a browser does with the login URL.

    with web_daemon() as (daemon, web):
        web.login()                      # GET /login?token=..., keeps the cookie
        web.get("/")                     # a page, with the cookie
        web.post_json("/api/review", {...})  # with Origin and the page's CSRF token
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from tests.daemon_harness import DaemonProcess, running_daemon
from tests.deadlines import patience

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


class WebClient:
    def __init__(self, daemon: DaemonProcess) -> None:
        self.daemon = daemon
        web_folder = daemon.home / "web"
        self.port = int(json.loads((web_folder / "server.json").read_text())["port"])
        self.token = (web_folder / "token").read_text().strip()
        self.base = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.base, timeout=patience(10.0), follow_redirects=False)

    @property
    def login_url(self) -> str:
        return f"{self.base}/login?token={self.token}"

    def login(self) -> httpx.Response:
        response = self.http.get(f"/login?token={self.token}")
        assert response.status_code == 303, response.text
        return response

    def csrf(self) -> str:
        page = self.http.get("/", headers={"accept": "text/html"})
        match = CSRF_META.search(page.text)
        assert match, page.text[:500]
        return match.group(1)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def post_json(
        self, path: str, body: Mapping[str, Any], *, origin: str | None = "same", csrf: str | None = "same",
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if origin is not None:
            sent["origin"] = self.base if origin == "same" else origin
        if csrf is not None:
            sent["x-csrf-token"] = self.csrf() if csrf == "same" else csrf
        return self.http.post(path, json=dict(body), headers=sent)

    def close(self) -> None:
        self.http.close()


def server_file(daemon: DaemonProcess) -> Path:
    return daemon.home / "web" / "server.json"


@contextlib.contextmanager
def web_daemon(env: Mapping[str, str] | None = None) -> Iterator[tuple[DaemonProcess, WebClient]]:
    with running_daemon(
        env={"WFBATCH_LOCAL__LATENCY_MAX": "0", "WFBATCH_WEB__PORT": "0", **(env or {})},
        extra_args=("--web",),
    ) as daemon:
        # The web app starts just after the socket answers: its server file says when it listens.
        daemon.wait_until(lambda: _serving(daemon), what="the web app's server file")
        web = WebClient(daemon)
        try:
            yield daemon, web
        finally:
            web.close()


def _serving(daemon: DaemonProcess) -> bool:
    try:
        data = json.loads(server_file(daemon).read_text())
    except (OSError, ValueError):
        return False
    return bool(data.get("pid") == daemon.pid and data.get("port"))
