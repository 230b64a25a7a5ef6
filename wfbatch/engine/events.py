"""What the engine tells the world: one protocol event (`wfbatch.protocol.events`) per change."""

from __future__ import annotations

from collections.abc import Callable

from wfbatch.protocol import Event

EventSink = Callable[[Event], None]


def discard(event: Event) -> None:
    return None
