"""Serving the simulator: uvicorn on a loopback socket, in a background thread (`RunningSimulator`,
for sync code and tests), on the caller's loop (`AsyncRunningSimulator`), or in the foreground
(`serve`, for `wfbatch sim`)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, MutableMapping
from dataclasses import replace
from types import TracebackType
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from wfbatch.sim.app import build_app
from wfbatch.sim.faults import TRANSPORT_SCOPE_KEY
from wfbatch.sim.keys import SimKeys, build_keyed_app
from wfbatch.sim.options import SimOptions
from wfbatch.sim.registry import SIM_PROVIDERS
from wfbatch.sim.state import Clock, SimState

STARTUP_TIMEOUT = 10.0
SHUTDOWN_TIMEOUT = 5.0


class _TransportExposingH11(H11Protocol):
    """uvicorn's h11 protocol, with the connection's transport in each request's scope, so an
    injected fault can drop the connection for real (see `faults.drop_connection`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        inner = self.app

        async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
            scope[TRANSPORT_SCOPE_KEY] = self.transport
            await inner(cast(Any, scope), receive, send)

        self.app = cast(Any, app)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP,
    # and without it every response waits ~40 ms on Nagle + delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)  # listening before anyone is told the address
    except OSError:
        sock.close()
        raise
    return sock


def make_world(options: SimOptions, clock: Clock = time.time) -> SimState | SimKeys:
    """One state, or one per key when the options list several keys."""
    return SimKeys(options, clock=clock) if options.api_keys else SimState(options, clock=clock)


def _server(world: SimState | SimKeys, *, quiet: bool) -> uvicorn.Server:
    app = build_keyed_app(world, build_app) if isinstance(world, SimKeys) else build_app(world)
    config = uvicorn.Config(
        app,
        http=_TransportExposingH11,
        ws="websockets-sansio",  # ComfyUI's /ws; the sans-I/O one: the legacy one warns
        lifespan="off",
        access_log=not quiet,
        log_level="warning" if quiet else "info",
        log_config=None if quiet else uvicorn.config.LOGGING_CONFIG,
        # Injected `slow` faults keep requests open; shutdown must not wait for them.
        timeout_graceful_shutdown=1,
        timeout_keep_alive=5,
    )
    return uvicorn.Server(config)


class _Urls:
    _sock: socket.socket | None
    options: SimOptions
    world: SimState | SimKeys

    @property
    def state(self) -> SimState:
        """The simulator's state; with several keys, the first key's (each one's: `keys.states`)."""
        return self.world.states[0] if isinstance(self.world, SimKeys) else self.world

    @property
    def keys(self) -> SimKeys:
        """Every key's state, when the options list several keys."""
        if not isinstance(self.world, SimKeys):
            raise TypeError("this simulator serves one key (SimOptions.api_keys is empty)")
        return self.world

    def stats(self) -> dict[str, Any]:
        """What `/_sim/stats` answers (per key under `accounts`, with several keys)."""
        return self.world.stats()

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError("the simulator is not running")
        return int(self._sock.getsockname()[1])

    @property
    def root_url(self) -> str:
        host = self.options.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What the simulated provider's client uses as its base URL (`…/api/v1`, `…/v1`)."""
        return f"{self.root_url}{SIM_PROVIDERS[self.options.provider].api_prefix}"


class RunningSimulator(_Urls):
    """The simulator in a background thread::

    with RunningSimulator(SimOptions(latency=(0.1, 0.2))) as sim:
        WireflowSettings(base_url=sim.base_url, ...)
        sim.state.stats()
    """

    def __init__(
        self, options: SimOptions | None = None, *, clock: Clock = time.time, **overrides: Any
    ) -> None:
        options = options or SimOptions()
        self.options = replace(options, **overrides) if overrides else options
        self.world = make_world(self.options, clock)
        self._sock: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self) -> None:
        self._sock = _bind(self.options.host, self.options.port)
        self._server = server = _server(self.world, quiet=True)
        sock = self._sock

        def run() -> None:
            try:
                asyncio.run(server.serve(sockets=[sock]))
            except BaseException as exc:  # reported by start()/stop(), never as a thread crash
                self._error = exc

        self._thread = threading.Thread(target=run, name="wfbatch-sim", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the simulator did not start: {self._error!r}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving; bounded: a forced exit follows if the graceful one takes too long."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(SHUTDOWN_TIMEOUT)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(SHUTDOWN_TIMEOUT)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = None

    def __enter__(self) -> RunningSimulator:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class AsyncRunningSimulator(_Urls):
    """The simulator as a task on the current event loop: `async with AsyncRunningSimulator() as sim`."""

    def __init__(
        self, options: SimOptions | None = None, *, clock: Clock = time.time, **overrides: Any
    ) -> None:
        options = options or SimOptions()
        self.options = replace(options, **overrides) if overrides else options
        self.world = make_world(self.options, clock)
        self._sock: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AsyncRunningSimulator:
        self._sock = _bind(self.options.host, self.options.port)
        self._server = server = _server(self.world, quiet=True)
        self._task = asyncio.create_task(server.serve(sockets=[self._sock]))
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not server.started:
            if self._task.done() or time.monotonic() > deadline:
                await self.__aexit__(None, None, None)
                raise RuntimeError("the simulator did not start")
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(self._task), SHUTDOWN_TIMEOUT)
            except TimeoutError:
                self._server.force_exit = True
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._sock is not None:
            self._sock.close()
        self._server = None
        self._task = None


def serve(
    options: SimOptions,
    *,
    state: SimState | SimKeys | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run in the foreground until Ctrl-C (uvicorn handles the signals). `on_ready(base_url)` is
    called once the socket listens."""
    sock = _bind(options.host, options.port)
    try:
        host = f"[{options.host}]" if ":" in options.host else options.host
        if on_ready is not None:
            prefix = SIM_PROVIDERS[options.provider].api_prefix
            on_ready(f"http://{host}:{sock.getsockname()[1]}{prefix}")
        _server(state or make_world(options), quiet=True).run(sockets=[sock])
    finally:
        sock.close()
