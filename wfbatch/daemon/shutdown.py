"""Stopping in order, within the 10 s the whole stop may take (systemd's TimeoutStopSec is 15):
the engine first (it records state; in-flight executions resume on the next start), then the API
(its event streams were ended first, so it can close its connections), then the inbox."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from wfbatch.daemon.wiring import SERVER_STOP_TIMEOUT, Parts

log = logging.getLogger("wfbatch.daemon")

ENGINE_STOP_TIMEOUT = 6.0


@dataclass(frozen=True)
class Running:
    """The daemon's long-lived tasks, and the event that tells them to stop."""

    stop: asyncio.Event
    engine: asyncio.Task[None]
    inbox: asyncio.Task[None]
    server: asyncio.Task[None]
    stop_waiter: asyncio.Task[bool]


async def shut_down(parts: Parts, running: Running) -> bool:
    """Stop everything; False when the engine did not stop in time."""
    stopping = time.monotonic()
    in_time = True
    running.stop.set()
    parts.hub.close()  # ends the event streams, so the API can close its connections
    try:
        await asyncio.wait_for(_stop_engine(parts, running.engine), ENGINE_STOP_TIMEOUT)
    except TimeoutError:
        log.error("the engine did not stop within %.0f s; in-flight jobs resume next start",
                  ENGINE_STOP_TIMEOUT)
        in_time = False
    parts.server.should_exit = True
    for task, timeout in ((running.server, SERVER_STOP_TIMEOUT + 1), (running.inbox, 1.0)):
        try:
            await asyncio.wait_for(task, timeout)
        except TimeoutError:
            parts.server.force_exit = True
        except Exception:
            log.exception("while stopping the %s", task.get_name())
    running.stop_waiter.cancel()
    log.info("stopped in %.1f s", time.monotonic() - stopping)
    return in_time


async def _stop_engine(parts: Parts, engine_task: asyncio.Task[None]) -> None:
    with contextlib.suppress(Exception):
        await engine_task
    await parts.engine.shutdown()
