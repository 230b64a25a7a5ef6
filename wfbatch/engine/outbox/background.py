"""The engine's slow loops beside dispatch: uploads and notifications (workers of their own, fed
through the store), and in the daemon a watch over the providers — unreachable ones probed again,
balances kept fresh (an out-of-credits pause lifts by itself once covered), canceled executions
settled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from wfbatch.engine.clock import Clock
from wfbatch.engine.loop.pool import ProviderPool
from wfbatch.engine.loop.storage import StorageHealth, is_disk_full
from wfbatch.engine.outbox.delivery import DeliveryWorker
from wfbatch.engine.outbox.notify import Notifier

log = logging.getLogger("wfbatch.engine")

WATCH_TICK = 2.0
SETTLE_CANCELED_PERIOD = 30.0
DRAIN_SECONDS = 60.0


class Background:
    def __init__(
        self,
        *,
        pool: ProviderPool,
        storage: StorageHealth,
        delivery: DeliveryWorker,
        notifier: Notifier,
        clock: Clock,
        settle_canceled: Callable[[], Awaitable[int]],
    ) -> None:
        self._pool = pool
        self._storage = storage
        self._delivery = delivery
        self._notifier = notifier
        self._clock = clock
        self._settle_canceled = settle_canceled
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, *, watch_providers: bool) -> None:
        self._tasks = [
            asyncio.create_task(self._delivery.run(), name="delivery"),
            asyncio.create_task(self._notifier.run(), name="notify"),
        ]
        if watch_providers:
            self._tasks.append(asyncio.create_task(self._watch_providers(), name="providers"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def drain(self, wait: float = DRAIN_SECONDS) -> None:
        """`wfbatch run` ends once its uploads are through, or after `wait` seconds: what is left is
        uploaded by the next engine on this HOME (the daemon, or another run)."""
        deadline = self._clock.monotonic() + wait
        while self._clock.monotonic() < deadline:
            if not await self._delivery.pending() and not await self._notifier.pending():
                return
            await asyncio.sleep(0.1)
        log.warning("some uploads or notifications are still pending; the next start sends them")

    async def _watch_providers(self) -> None:
        settled_at = self._clock.monotonic()
        while True:
            try:
                self._pool.probe_unreachable()
                await self._pool.refresh_due_balances()
                if self._clock.monotonic() - settled_at >= SETTLE_CANCELED_PERIOD:
                    settled_at = self._clock.monotonic()
                    await self._settle_canceled()
            except Exception as error:
                if is_disk_full(error):
                    self._storage.failed(error)
                else:
                    log.exception("the providers' watch failed; trying again")
            await asyncio.sleep(WATCH_TICK)
