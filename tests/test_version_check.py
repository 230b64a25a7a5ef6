"""Every client checks the daemon's API version before its first call and says what to do when it
differs: the CLI refuses with one line and exit 2, the TUI shows why it does not attach.

The daemon here is a tiny ASGI app on a temporary Unix socket that answers `/v1/health` as a
daemon of another API version would, and records every request it gets.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.daemon_harness import clean_env, short_tmpdir
from tests.deadlines import patience
from tests.test_tui_support import wait_until
from wfbatch.client.client import DaemonClient
from wfbatch.protocol import API_VERSION, routes
from wfbatch.tui import WfbatchApp

OTHER = API_VERSION + 1


@dataclass
class FakeDaemon:
    socket: Path
    requests: list[str] = field(default_factory=list)


@contextlib.contextmanager
def daemon_of_another_version() -> Iterator[FakeDaemon]:
    folder = short_tmpdir()
    fake = FakeDaemon(folder / "d.sock")

    async def health(request: Request) -> JSONResponse:
        fake.requests.append(f"{request.method} {request.url.path}")
        # A health answer of that other version: the fields our model needs are not all there.
        return JSONResponse({"ok": True, "version": "9.0.0", "api_version": OTHER})

    async def anything(request: Request) -> JSONResponse:
        fake.requests.append(f"{request.method} {request.url.path}")
        return JSONResponse({"error": "not here"}, status_code=404)

    app = Starlette(routes=[
        Route(routes.HEALTH, health),
        Route("/{path:path}", anything, methods=["GET", "POST"]),
    ])
    server = uvicorn.Server(uvicorn.Config(app, uds=str(fake.socket), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + patience(10)
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the fake daemon did not start"
            time.sleep(0.02)
        yield fake
    finally:
        server.should_exit = True
        thread.join(10)
        shutil.rmtree(folder, ignore_errors=True)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wfbatch", *args], capture_output=True, text=True, timeout=60, env=clean_env()
    )


def test_the_cli_refuses_a_daemon_of_another_api_version_with_one_line_and_exit_2() -> None:
    with daemon_of_another_version() as fake:
        out = _cli("status", "--socket", str(fake.socket))
        cancel = _cli("cancel", "1", "--socket", str(fake.socket))
    expected = (
        f"wfbatch: the daemon at {fake.socket} speaks API v{OTHER} (wfbatch 9.0.0), this wfbatch speaks "
        f"v{API_VERSION}: restart the daemon with this wfbatch (`wfbatch daemon`) or use the matching CLI\n"
    )
    assert (out.returncode, out.stderr, out.stdout) == (2, expected, "")
    assert (cancel.returncode, cancel.stderr) == (2, expected)
    # Nothing but the version check reached it: the command was not sent.
    assert fake.requests == [f"GET {routes.HEALTH}"] * 2


async def test_the_tui_says_the_daemon_speaks_another_version_instead_of_attaching() -> None:
    with daemon_of_another_version() as fake:
        app = WfbatchApp(DaemonClient(fake.socket), close_client=True)
        async with app.run_test(size=(120, 40)):
            await wait_until(lambda: "another version of the API" in app.offline_screen.text.plain)
            text = app.offline_screen.text.plain
            assert app.current_mode == "offline"
            assert f"speaks API v{OTHER}" in text and "restart the daemon with this wfbatch" in text
            assert "No wfbatch daemon is running" not in text
    assert set(fake.requests) == {f"GET {routes.HEALTH}"}
