"""An in-process broadcast of engine events to `/v1/events` subscribers.

The engine must never wait for a client: `publish` is synchronous and never blocks. Each subscriber
has a bounded queue; one that falls behind loses what was queued and gets a single `resync` event
instead (its cue to re-read `/v1/status` and the jobs it shows).
"""

from __future__ import annotations

import asyncio
from collections import deque

from wfbatch.protocol import Event, ResyncEvent

QUEUE_LIMIT = 1000


class Subscription:
    def __init__(self, hub: EventHub, limit: int) -> None:
        self._hub = hub
        self._limit = limit
        self._items: deque[Event] = deque()
        self._ready = asyncio.Event()
        self.dropped = 0
        self.closed = False

    def push(self, event: Event) -> None:
        if self.closed:
            return
        if len(self._items) >= self._limit:
            self.dropped += len(self._items)
            self._items.clear()
            self._items.append(ResyncEvent(dropped=self.dropped))
        self._items.append(event)
        self._ready.set()

    async def get(self) -> Event | None:
        """The next event; None once the hub (or this subscription) is closed."""
        while not self._items:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def close(self) -> None:
        self.closed = True
        self._ready.set()
        self._hub.discard(self)


class EventHub:
    def __init__(self, limit: int = QUEUE_LIMIT) -> None:
        self._limit = limit
        self._subscribers: set[Subscription] = set()
        self.closed = False
        self.published = 0

    def publish(self, event: Event) -> None:
        self.published += 1
        for subscription in list(self._subscribers):
            subscription.push(event)

    def subscribe(self) -> Subscription:
        subscription = Subscription(self, self._limit)
        if self.closed:
            subscription.closed = True
        else:
            self._subscribers.add(subscription)
        return subscription

    def discard(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def close(self) -> None:
        """End every stream (at shutdown): each subscriber's `get` returns None."""
        self.closed = True
        for subscription in list(self._subscribers):
            subscription.close()

    def __len__(self) -> int:
        return len(self._subscribers)
