"""`wfbatch daemon`: one process per HOME running the engine, the inbox watcher and the API.

Start-up order matters: the HOME lock first (only its holder may remove a stale socket), then the
socket, the store, the engine (which resumes what a previous process left in flight), the inbox
and the API. SIGTERM/SIGINT stop dispatching and record state; in-flight executions keep their
remote ids and are resumed by the next start. SIGHUP reloads the limits from the configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from wfbatch import __version__
from wfbatch.daemon.app import build_app
from wfbatch.daemon.connections import (
    ConnectionGuard,
    connection_limit,
    guarded_protocol,
    on_loop_exception,
    raise_fd_limit,
)
from wfbatch.daemon.context import DaemonContext
from wfbatch.daemon.hub import EventHub
from wfbatch.daemon.inbox import Inbox
from wfbatch.daemon.listener import BACKLOG, bind_unix_socket, remove_socket
from wfbatch.daemon.progress import CompletionTracker
from wfbatch.engine.control import Control
from wfbatch.engine.scheduler import Engine
from wfbatch.home import HomeLayout, HomeLock
from wfbatch.protocol import EngineEvent, Event
from wfbatch.settings import Settings, SettingsError, load_settings
from wfbatch.store import Store

log = logging.getLogger("wfbatch.daemon")

# The whole stop must fit in 10 s (systemd's TimeoutStopSec is 15): engine first, then the API.
ENGINE_STOP_TIMEOUT = 6.0
SERVER_STOP_TIMEOUT = 2.0


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon orders the shutdown itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _describe_limit_changes(changes: dict[str, dict[str, tuple[Any, Any]]]) -> str:
    parts = []
    for provider, diff in sorted(changes.items()):
        fields = ", ".join(f"{key} {old!r} → {new!r}" for key, (old, new) in sorted(diff.items()))
        parts.append(f"{provider}: {fields}")
    return "; ".join(parts)


async def run_daemon(
    settings: Settings,
    socket_path: Path,
    *,
    private_socket_folder: bool,
    reload_settings: Callable[[], Settings] | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit code. Raises `HomeLocked` when another engine
    holds HOME and `SocketPathError` when the socket cannot be created."""
    layout = HomeLayout(settings.home)
    layout.ensure()
    lock = HomeLock(layout)
    lock.acquire("wfbatch daemon", socket=socket_path)
    sock = None
    inode: int | None = None
    try:
        sock = bind_unix_socket(socket_path, private_folder=private_socket_folder)
        inode = os.lstat(socket_path).st_ino
        store = await Store.open(layout.db)
        try:
            return await _serve(settings, layout, store, sock, socket_path, reload_settings)
        finally:
            await store.close()
    finally:
        remove_socket(socket_path, sock, inode)
        lock.release()


async def _serve(
    settings: Settings,
    layout: HomeLayout,
    store: Store,
    sock: Any,
    socket_path: Path,
    reload_settings: Callable[[], Settings] | None,
) -> int:
    hub = EventHub()
    tracker = CompletionTracker()

    def sink(event: Event) -> None:
        tracker.observe(event)
        hub.publish(event)

    engine = Engine(store, settings, layout, events=sink)
    control = Control(engine, events=sink)
    ctx = DaemonContext(engine=engine, control=control, hub=hub, tracker=tracker)
    inbox = Inbox(
        layout, control, lambda: engine.settings, events=sink,
        on_outcome=lambda outcome: ctx.inbox_outcomes.update([outcome]),
    )
    guard = ConnectionGuard(max_connections=connection_limit(raise_fd_limit()))
    server = _Server(
        uvicorn.Config(
            build_app(ctx),
            http=guarded_protocol(guard),
            lifespan="off",
            ws="none",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=int(SERVER_STOP_TIMEOUT),
            timeout_keep_alive=30,
            # asyncio accepts up to `backlog` connections in one go before any protocol runs:
            # keep that burst as small as the listen queue.
            backlog=BACKLOG,
        )
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(on_loop_exception(guard))

    def on_stop_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting at once", signal.Signals(signum).name)
            os._exit(1)
        log.info("%s: stopping (in-flight jobs resume on the next start)", signal.Signals(signum).name)
        stop.set()

    def on_reload() -> None:
        if reload_settings is None:
            return
        try:
            new = reload_settings()
        except SettingsError as error:
            log.error("SIGHUP: configuration not reloaded (the previous settings stay): %s", error)
            return
        changes = engine.reload_limits(new)
        if changes:
            log.info("SIGHUP: limits reloaded: %s", _describe_limit_changes(changes))
        else:
            log.info("SIGHUP: configuration reloaded; no limit changed")
        sink(EngineEvent(event="reloaded", changed=sorted(changes)))

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_stop_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, on_reload)

    engine_task = asyncio.create_task(engine.run_forever(stop), name="engine")
    inbox_task = asyncio.create_task(inbox.run(stop), name="inbox")
    server_task = asyncio.create_task(server.serve(sockets=[sock]), name="api")
    stop_task = asyncio.create_task(stop.wait(), name="stop")
    log.info(
        "wfbatch %s daemon (pid %d): HOME %s, socket %s, inbox %s",
        __version__, os.getpid(), layout.root, socket_path, layout.inbox,
    )
    exit_code = 0
    try:
        done, _ = await asyncio.wait(
            {engine_task, inbox_task, server_task, stop_task}, return_when=asyncio.FIRST_COMPLETED
        )
        if stop_task not in done:
            for task in done:
                error = task.exception()
                log.error("the %s stopped unexpectedly: %r; shutting down", task.get_name(), error,
                          exc_info=error)
            exit_code = 1
    finally:
        stopping = time.monotonic()
        stop.set()
        hub.close()  # ends the event streams, so the API can close its connections
        try:
            await asyncio.wait_for(_stop_engine(engine, engine_task), ENGINE_STOP_TIMEOUT)
        except TimeoutError:
            log.error("the engine did not stop within %.0f s; in-flight jobs resume next start",
                      ENGINE_STOP_TIMEOUT)
            exit_code = exit_code or 1
        server.should_exit = True
        for task, timeout in ((server_task, SERVER_STOP_TIMEOUT + 1), (inbox_task, 1.0)):
            try:
                await asyncio.wait_for(task, timeout)
            except TimeoutError:
                server.force_exit = True
            except Exception:
                log.exception("while stopping the %s", task.get_name())
        stop_task.cancel()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        log.info("stopped in %.1f s", time.monotonic() - stopping)
    return exit_code


async def _stop_engine(engine: Engine, engine_task: asyncio.Task[None]) -> None:
    with contextlib.suppress(Exception):
        await engine_task
    await engine.shutdown()


def settings_reloader(home: Path, overrides: dict[str, Any]) -> Callable[[], Settings]:
    """Re-read wfbatch.toml (and the process's environment) with the same command-line flags."""

    def reload() -> Settings:
        return load_settings(home, **overrides)

    return reload
