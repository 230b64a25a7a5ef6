"""Stopping a background task the one way every worker here does it."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` and wait until it has ended, so nothing it holds outlives the caller. For
    shutdown paths: a CancelledError met while waiting is swallowed, the caller's own included."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` have passed; True if it was set.

    Not `asyncio.wait_for`: on Python 3.11 a cancellation that arrives as its timeout expires can be
    turned into the TimeoutError, which a waiting loop takes for "nothing happened" and goes on —
    the task then never ends and whoever awaits its cancellation hangs (seen: a ComfyUI listener
    that never stopped). `asyncio.timeout` tells its own expiry from a cancellation."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
