"""Bounds on the API's connections: a deadline for every request, a cap on open connections, and
no connection that stops reading kept forever.

uvicorn's h11 protocol times out only a kept-alive connection after a response. A connection that
never sends a request, sends half its headers, or trickles one byte a second is kept forever; a
few hundred of them use up the process's file descriptors, and the inbox and the API go down with
them. `guarded_protocol` wraps uvicorn's protocol with:

- a request deadline: from the connection (or from the first byte of a request on a kept-alive
  one), the whole request, headers and body, must arrive within `request_timeout`;
- a cap: at `max_connections`, the oldest connection that is not being answered (still sending
  its request, or idle between requests) is dropped for the new one; only when every connection
  is busy is the new one refused, so a flood of idle connections cannot lock a client out;
- a write stall limit: a client that stops reading (a never-read event stream) is dropped once
  the send buffer has stayed full for `write_stall_timeout`.

Nothing is logged per connection: counts, at most one line a minute (`logs.RateLimitFilter`).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass, field
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("wfbatch.daemon.connections")

REQUEST_TIMEOUT = 10.0
WRITE_STALL_TIMEOUT = 20.0
MAX_CONNECTIONS = 512
# File descriptors kept for everything that is not a connection: SQLite, the inbox watcher, images
# being written, the providers' HTTP clients.
RESERVED_FDS = 256

# h11 states of the peer once its request has fully arrived.
_REQUEST_RECEIVED = frozenset({h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR})


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard one (a stock 1024 is low for a server);
    returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def connection_limit(fd_limit: int) -> int:
    """At most MAX_CONNECTIONS, and always leaving RESERVED_FDS descriptors for the rest."""
    return max(8, min(MAX_CONNECTIONS, fd_limit - RESERVED_FDS))


@dataclass
class ConnectionGuard:
    """The shared state of one server's connections."""

    max_connections: int
    request_timeout: float = REQUEST_TIMEOUT
    write_stall_timeout: float = WRITE_STALL_TIMEOUT
    idle: dict[GuardedH11Protocol, None] = field(default_factory=dict)
    """Connections not being answered, oldest first (a dict keeps insertion order)."""
    dropped: dict[str, int] = field(default_factory=dict)

    def drop_oldest_idle(self, reason: str) -> bool:
        for protocol in self.idle:
            protocol.drop(reason)
            return True
        return False

    def count(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        log.warning(
            "API connections dropped so far: %s",
            ", ".join(f"{n} {why}" for why, n in sorted(self.dropped.items())),
        )


class GuardedH11Protocol(H11Protocol):
    guard: ClassVar[ConnectionGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._request_deadline: asyncio.TimerHandle | None = None
        self._write_stall: asyncio.TimerHandle | None = None

    # -- the connection's life ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        full = len(self.connections) >= self.guard.max_connections
        super().connection_made(transport)
        if full and not self.guard.drop_oldest_idle("to make room"):
            self.drop("refused, all busy")
            return
        self._await_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        self._cancel(self._write_stall)
        self._write_stall = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state in _REQUEST_RECEIVED:
            self._stop_waiting()
        elif self._request_deadline is None and not self.transport.is_closing():
            self._await_request()  # the first bytes of a request on a kept-alive connection

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Idle until the next request: uvicorn's keep-alive timer closes it; droppable meanwhile.
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.guard.idle[self] = None

    # -- a client that does not read ------------------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_stall is None:
            self._write_stall = self.loop.call_later(
                self.guard.write_stall_timeout, self.drop, "not reading"
            )

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel(self._write_stall)
        self._write_stall = None

    # -- helpers ----------------------------------------------------------------------------------

    def drop(self, reason: str) -> None:
        """Close at once (abort: a client that does not read would hold a graceful close open)."""
        self._stop_waiting()
        if not self.transport.is_closing():
            self.guard.count(reason)
        self.transport.abort()

    def _await_request(self) -> None:
        self.guard.idle[self] = None
        self._cancel(self._request_deadline)
        self._request_deadline = self.loop.call_later(
            self.guard.request_timeout, self.drop, "request too slow"
        )

    def _stop_waiting(self) -> None:
        self.guard.idle.pop(self, None)
        self._cancel(self._request_deadline)
        self._request_deadline = None

    @staticmethod
    def _cancel(timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()


def guarded_protocol(guard: ConnectionGuard) -> type[GuardedH11Protocol]:
    """A protocol class for `uvicorn.Config(http=...)` bound to `guard`."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"guard": guard})


def on_loop_exception(guard: ConnectionGuard) -> Any:
    """A loop exception handler: asyncio reports an accept() that failed for lack of descriptors
    (EMFILE) with a traceback, once a second, and retries after 1 s. Make it one rate-limited line,
    and free descriptors by dropping the oldest idle connections."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == "socket.accept() out of system resource":
            error = context.get("exception")
            log.warning("the API cannot accept connections (%s): dropping idle ones; retrying in 1 s",
                        getattr(error, "strerror", None) or error)
            for _ in range(max(1, len(guard.idle) // 2)):
                if not guard.drop_oldest_idle("out of file descriptors"):
                    break
            return
        loop.default_exception_handler(context)

    return handle
