"""Messages from the connection worker to the app and its screens: small dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.message import Message

from wfbatch.protocol import Health
from wfbatch.tui.changes import ChangeSet


@dataclass
class Connected(Message):
    """The daemon answered its health check; the event stream is being opened."""

    health: Health


@dataclass
class Disconnected(Message):
    """Nothing answers on the socket (yet, or any more); the worker keeps trying."""

    socket_path: Path
    reason: str
    attempts: int
    was_connected: bool = False
    mismatch: bool = False
    """A daemon answers, but speaks another API version: `reason` says what to do."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, Disconnected)


@dataclass
class DataChanged(Message):
    """Events arrived; a newer one absorbs the pending one so a busy batch can't flood the queue."""

    changes: ChangeSet

    def can_replace(self, message: Message) -> bool:
        if isinstance(message, DataChanged):
            merged = message.changes
            merged.merge(self.changes)
            self.changes = merged
            return True
        return False


@dataclass
class ConnectionTrouble(Message):
    """A call failed for want of a daemon while the app thought it was attached."""

    reason: str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ConnectionTrouble)
