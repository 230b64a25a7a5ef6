"""Attach to the daemon and stay attached: health check, event stream, reconnect on loss.

`watch_daemon` runs for the life of the app (in an exclusive worker) and reports through
messages only: `Disconnected` while nothing answers (retried every `retry_interval`),
`Connected` when the daemon answers, `DataChanged` for each event of its stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
from textual.message import Message

from wfbatch.client.client import ApiError, DaemonClient, DaemonUnavailable, VersionMismatch
from wfbatch.tui.changes import ChangeSet
from wfbatch.tui.messages import Connected, DataChanged, Disconnected

LOST_CONNECTION = (DaemonUnavailable, httpx.HTTPError, OSError)
"""Errors that mean "the daemon is not (or no longer) there"."""
CONNECTION_ERRORS = (*LOST_CONNECTION, ApiError)
"""What the connection watcher treats as "not attached". A screen's call that gets an `ApiError`
(a 404, a 500) is still connected: it says what failed and carries on."""


def describe(error: BaseException) -> str:
    if isinstance(error, DaemonUnavailable):
        return "nothing answers on the socket"
    if isinstance(error, httpx.HTTPError):
        return f"connection lost ({type(error).__name__})"
    if isinstance(error, ApiError):
        detail = f": {error.detail}" if isinstance(error.detail, str) and error.detail else ""
        return f"the daemon answered {error.status}: {error.error}{detail}"
    return str(error) or type(error).__name__


async def watch_daemon(
    client: DaemonClient,
    post: Callable[[Message], object],
    *,
    retry_interval: float = 1.0,
    was_connected: bool = False,
) -> None:
    """`was_connected`: this watch takes over from one that had the daemon (a request failed before
    the event stream noticed), so nothing answering now means the daemon was lost, not absent."""
    attempts = 0
    while True:
        try:
            health = await client.health()
        except VersionMismatch as error:
            attempts += 1
            post(Disconnected(client.socket_path, str(error), attempts, was_connected, mismatch=True))
            await asyncio.sleep(max(retry_interval, 5.0))
            continue
        except CONNECTION_ERRORS as error:
            attempts += 1
            post(Disconnected(client.socket_path, describe(error), attempts, was_connected))
            await asyncio.sleep(retry_interval)
            continue
        attempts = 0
        was_connected = True
        post(Connected(health))
        try:
            async for event in client.events():
                changes = ChangeSet.from_event(event)
                if changes:
                    post(DataChanged(changes))
            reason = "the daemon closed the event stream"
        except CONNECTION_ERRORS as error:
            reason = describe(error)
        post(Disconnected(client.socket_path, reason, 0, was_connected))
        # A restarting daemon needs a moment; don't spin if the stream ends at once.
        await asyncio.sleep(min(retry_interval, 0.5))
