"""The web app's server, run by the daemon process as a sidecar (`[web] enabled = true`).

It listens on 127.0.0.1 only — never a wildcard address: remote use goes through `ssh -L`, as for
the socket. The socket is bound here (port 0 picks a free one), and the port actually bound is
written to HOME/web/server.json beside the login token for `wfbatch web` and the tests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from wfbatch.client import DaemonClient
from wfbatch.home import HomeLayout
from wfbatch.web.access import ensure_token, remove_server_file, write_server_file
from wfbatch.web.app import build_web_app

log = logging.getLogger("wfbatch.web")
LOOPBACK = "127.0.0.1"
STOP_TIMEOUT = 1


class WebServer(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon orders the shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_loopback(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((LOOPBACK, port))
    except OSError as error:
        sock.close()
        raise OSError(
            f"the web app cannot listen on {LOOPBACK}:{port}: {error.strerror or error}; "
            "set another [web] port in wfbatch.toml (0: any free one)"
        ) from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def web_sidecar(
    layout: HomeLayout, socket_path: Path, port: int
) -> Callable[[asyncio.Event, asyncio.Event], Coroutine[Any, Any, None]]:
    """The daemon's sidecar (see `wfbatch.daemon.sidecars`) serving the web app on `port`."""

    async def run(stop: asyncio.Event, ready: asyncio.Event) -> None:
        token = ensure_token(layout.web)
        sock = bind_loopback(port)
        client = DaemonClient(socket_path)
        app, ctx = build_web_app(client, token=token, output_root=layout.output)
        ctx.port = sock.getsockname()[1]
        server = WebServer(
            uvicorn.Config(
                app, lifespan="off", ws="none", log_config=None, access_log=False,
                timeout_graceful_shutdown=STOP_TIMEOUT,
            )
        )
        write_server_file(layout.web, pid=os.getpid(), port=ctx.port)
        log.info("web app on http://%s:%d (login URL: `wfbatch web`)", LOOPBACK, ctx.port)
        serving = asyncio.create_task(server.serve(sockets=[sock]), name="web")
        ready.set()  # the socket listens already: connections wait in its queue until uvicorn runs
        stopping = asyncio.create_task(stop.wait(), name="web stop")
        try:
            await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            server.should_exit = True
            await serving
        finally:
            stopping.cancel()
            remove_server_file(layout.web, os.getpid())
            await client.aclose()
            sock.close()

    return run
