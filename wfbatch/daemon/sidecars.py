"""Sidecars: what else the daemon process serves while it runs (the web app), each by name.

The CLI composes them and hands them to `run_daemon`, so the daemon imports nothing above it. A
sidecar starts with the daemon when asked (`autostart`, e.g. `[web] enabled = true`) or later
through `POST /v1/sidecars/{name}` (`wfbatch web`); it gets the daemon's stop event and an event
to set once it serves. One that fails (a port in use) is logged and can be started again; the
daemon's own work goes on without it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("wfbatch.daemon")

SidecarRun = Callable[[asyncio.Event, asyncio.Event], Coroutine[Any, Any, None]]
"""`run(stop, ready)`: serve until `stop` is set; set `ready` once serving."""
READY_TIMEOUT = 5.0
STOP_TIMEOUT = 3.0


@dataclass(frozen=True)
class Sidecar:
    name: str
    run: SidecarRun
    autostart: bool = False


class SidecarFailed(RuntimeError):
    """The sidecar ended before it was ready; the message is its own (one line for people)."""


@dataclass
class Sidecars:
    known: dict[str, Sidecar] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: dict[str, tuple[asyncio.Task[None], asyncio.Event]] = field(default_factory=dict)

    @classmethod
    def of(cls, sidecars: Sequence[Sidecar], stop: asyncio.Event) -> Sidecars:
        return cls(known={sidecar.name: sidecar for sidecar in sidecars}, stop=stop)

    def start_autostarted(self) -> None:
        for sidecar in self.known.values():
            if sidecar.autostart:
                self._start(sidecar)

    async def ensure(self, name: str) -> bool:
        """Start `name` unless it runs; wait until it serves. Returns False when it already ran.
        Raises KeyError for an unknown name, SidecarFailed when it ended before it was ready,
        TimeoutError when it is not ready within READY_TIMEOUT."""
        sidecar = self.known[name]
        running = self._tasks.get(name)
        started = running is None or running[0].done()
        if running is None or started:
            running = self._start(sidecar)
        task, ready = running
        waiter = asyncio.create_task(ready.wait())
        try:
            await asyncio.wait({task, waiter}, timeout=READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if ready.is_set():
            return started
        if task.done():
            error = task.exception() if not task.cancelled() else None
            raise SidecarFailed(str(error) if error else f"the {name} sidecar stopped")
        raise TimeoutError(f"the {name} sidecar did not start within {READY_TIMEOUT:.0f} s")

    def _start(self, sidecar: Sidecar) -> tuple[asyncio.Task[None], asyncio.Event]:
        previous = self._tasks.get(sidecar.name)
        if previous is not None and previous[0].done() and not previous[0].cancelled():
            previous[0].exception()  # logged when it failed; read, so asyncio does not log it again
        ready = asyncio.Event()
        task = asyncio.create_task(_guarded(sidecar, self.stop, ready), name=f"sidecar {sidecar.name}")
        self._tasks[sidecar.name] = (task, ready)
        return task, ready

    async def stop_all(self) -> None:
        tasks = [task for task, _ in self._tasks.values()]
        if not tasks:
            return
        self.stop.set()
        _, late = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _guarded(sidecar: Sidecar, stop: asyncio.Event, ready: asyncio.Event) -> None:
    try:
        await sidecar.run(stop, ready)
    except asyncio.CancelledError:
        raise
    except Exception as error:
        log.error("%s", error, exc_info=not isinstance(error, OSError))
        raise
