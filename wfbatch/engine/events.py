"""What the engine tells the world: one small event per change, for the daemon's event stream."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    kind: str
    """`job` (a job changed state), `batch`, `provider` (paused, blocked, resumed), `engine`."""
    data: dict[str, Any] = field(default_factory=dict)


EventSink = Callable[[Event], None]


def discard(event: Event) -> None:
    return None
