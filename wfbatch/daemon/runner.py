"""`wfbatch daemon`: one process per HOME running the engine, the inbox watcher and the API.

Start-up order matters: the HOME lock first (only its holder may remove a stale socket), then the
socket, the store, the engine (which resumes what a previous process left in flight), the inbox
and the API. The parts are built in `wiring`; `signals` says what SIGTERM/SIGINT/SIGHUP do;
`shutdown` stops the parts in order (in-flight executions keep their remote ids and are resumed by
the next start).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wfbatch import __version__
from wfbatch.daemon.connections import on_loop_exception
from wfbatch.daemon.fleet_files import check_fleet_files
from wfbatch.daemon.listener import bind_unix_socket, remove_socket
from wfbatch.daemon.shutdown import Running, shut_down
from wfbatch.daemon.sidecars import Sidecar, Sidecars
from wfbatch.daemon.signals import handled_signals, reloader
from wfbatch.daemon.wiring import wire
from wfbatch.home import HomeLayout, HomeLock
from wfbatch.settings import Settings, load_settings
from wfbatch.store import StoreApi, describe_store, open_store

log = logging.getLogger("wfbatch.daemon")


async def run_daemon(
    settings: Settings,
    socket_path: Path,
    *,
    private_socket_folder: bool,
    reload_settings: Callable[[], Settings] | None = None,
    sidecars: Sequence[Sidecar] = (),
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
        store = await open_store(settings.store.url(), layout.db)
        where = describe_store(settings.store.url(), layout.db)
        # In the background: a full scan (3 s at a million jobs) that reads a snapshot aside, so the
        # API answers from the first moment; the triggers keep the counters right meanwhile.
        checking = asyncio.create_task(_check_counters(store, where), name="counter check")
        try:
            return await _serve(settings, layout, store, sock, socket_path, reload_settings, sidecars)
        finally:
            checking.cancel()
            await asyncio.gather(checking, return_exceptions=True)
            await store.close()
    finally:
        remove_socket(socket_path, sock, inode)
        lock.release()


async def _check_counters(store: StoreApi, where: str) -> None:
    started = time.monotonic()
    try:
        await store.counters.check_counters()
    except Exception:  # any backend's database error: the check is a safeguard, the daemon goes on
        log.exception("%s: the counter check at start failed", where)
        return
    log.info("%s: counters checked against the tables in %.1f s", where, time.monotonic() - started)


async def _serve(
    settings: Settings,
    layout: HomeLayout,
    store: StoreApi,
    sock: Any,
    socket_path: Path,
    reload_settings: Callable[[], Settings] | None,
    sidecars: Sequence[Sidecar] = (),
) -> int:
    stop = asyncio.Event()
    extras = Sidecars.of(sidecars, stop)
    parts = wire(settings, layout, store, extras)
    check_fleet_files(settings, layout)
    await parts.engine.pool.learn_balances()
    asyncio.get_running_loop().set_exception_handler(on_loop_exception(parts.guard))
    with handled_signals(stop, reloader(parts.engine, parts.sink, reload_settings)):
        running = Running(
            stop,
            engine=asyncio.create_task(parts.engine.run_forever(stop), name="engine"),
            inbox=asyncio.create_task(parts.inbox.run(stop), name="inbox"),
            server=asyncio.create_task(parts.server.serve(sockets=[sock]), name="api"),
            stop_waiter=asyncio.create_task(stop.wait(), name="stop"),
        )
        log.info(
            "wfbatch %s daemon (pid %d): HOME %s, socket %s, inbox %s",
            __version__,
            os.getpid(),
            layout.root,
            socket_path,
            layout.inbox,
        )
        extras.start_autostarted()
        failed = False
        try:
            failed = await _until_stopped(running)
        finally:
            in_time = await shut_down(parts, running)
            await extras.stop_all()
    return 1 if failed or not in_time else 0


async def _until_stopped(running: Running) -> bool:
    """Wait for a stop signal; True when a part ended by itself instead (logged)."""
    parts = {running.engine, running.inbox, running.server, running.stop_waiter}
    done, _ = await asyncio.wait(parts, return_when=asyncio.FIRST_COMPLETED)
    if running.stop_waiter in done:
        return False
    for task in done:
        error = task.exception()
        log.error("the %s stopped unexpectedly: %r; shutting down", task.get_name(), error, exc_info=error)
    return True


def settings_reloader(home: Path, overrides: dict[str, Any]) -> Callable[[], Settings]:
    """Re-read wfbatch.toml (and the process's environment) with the same command-line flags."""

    def reload() -> Settings:
        return load_settings(home, **overrides)

    return reload
