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
