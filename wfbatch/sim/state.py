"""The simulator's shared world, in memory: the options, the clock, queued and drawn faults and the
request counters `/_sim/stats` reports, around the book of the provider it speaks (its executions,
credit, limits: see `SimBook`). No I/O here; time comes from `clock`, chance from seeded RNGs.
Thread-safe, because tests read it from outside the server's thread."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from wfbatch.sim.options import FAULT_KINDS, SimOptions
from wfbatch.sim.wire import WireFaults

Clock = Callable[[], float]
Book = TypeVar("Book")


class SimBook(Protocol):
    """What the shared state asks of a simulator's own books (each package keeps its own, made by
    the factory its registry entry names)."""

    def top_up(self, amount: float) -> float | None:
        """Raise the balance (credits, or images of quota); the new one, None = unlimited."""
        ...

    def report(self) -> dict[str, Any]:
        """Its part of `/_sim/stats`, with `rate_limited` among it."""
        ...


@dataclass
class QueuedFault:
    kind: str
    route: str | None
    count: int


def _new_book(options: SimOptions, clock: Clock) -> SimBook:
    # Looked up when a state is made, never when this module loads: the registry imports every
    # simulator's package, and their routes import this module.
    from wfbatch.sim.registry import SIM_PROVIDERS

    return SIM_PROVIDERS[options.provider].book(options, clock)


class SimState:
    def __init__(self, options: SimOptions | None = None, *, clock: Clock = time.time) -> None:
        self.options = options or SimOptions()
        self.clock = clock
        self._lock = threading.RLock()
        # Separate streams so turning faults on does not change latencies or failures.
        self._fault_rng = random.Random(f"fault:{self.options.seed}")
        self._cdn_rng = random.Random(f"cdn:{self.options.seed}")
        self._queued_faults: list[QueuedFault] = []
        self.requests_total = 0
        self.requests_by_route: Counter[str] = Counter()
        self.faults_injected: Counter[str] = Counter()
        self.wire = WireFaults()
        """Faults for the next API requests whatever the route set (see wire.py)."""
        self.book: SimBook = _new_book(self.options, clock)
        """The provider's own books: its executions, credit or quota, limits."""

    def book_as(self, kind: type[Book]) -> Book:
        """`book`, typed as the route set that keeps it knows it."""
        if not isinstance(self.book, kind):
            raise TypeError(f"the {self.options.provider} simulator keeps no {kind.__name__}")
        return self.book

    # -- bookkeeping -------------------------------------------------------------------------

    def count_request(self, route: str) -> None:
        with self._lock:
            self.requests_total += 1
            self.requests_by_route[route] += 1

    def top_up(self, amount: float) -> float | None:
        """Raise the balance (credits, or the quota in images); None = unlimited."""
        return self.book.top_up(amount)

    # -- auth --------------------------------------------------------------------------------

    def auth_error(self, header: str | None) -> str | None:
        """The docs' 401 messages; None when the key is accepted."""
        if not header:
            return "Missing Authorization header"
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key.startswith(("sk-", "wf_")):
            return "Invalid API key format. Expected: Bearer sk-..."
        # INVENTED: a way to rehearse the docs' expiry message without a real key lifecycle.
        if key.startswith(("sk-expired", "wf_expired")):
            return "API key has expired"
        if self.options.api_key is not None and key != self.options.api_key:
            return "Invalid API key"
        return None

    # -- faults ------------------------------------------------------------------------------

    def queue_fault(self, kind: str, *, route: str | None = None, count: int = 1) -> None:
        """Make the next `count` API requests (optionally only those to `route`, e.g. "execute")
        fail with `kind`, before any random draw."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
        with self._lock:
            self._queued_faults.append(QueuedFault(kind, route, count))

    def draw_fault(self, route: str, is_start: bool) -> str | None:
        """The fault for this API request, if any: queued ones first, then the seeded draw."""
        queued = self.take_queued_fault(route, is_start)
        if queued is not None:
            return queued
        with self._lock:
            o = self.options
            if o.error_rate <= 0 or self._fault_rng.random() >= o.error_rate:
                return None
            groups = [g for g in o.faults if g != "lost" or is_start]
            if not groups:
                return None
            group = self._fault_rng.choice(groups)
            if group == "5xx":
                return self._fault_rng.choice(("500", "502", "503"))
            if group == "lost":
                return self._fault_rng.choice(("lost_5xx", "lost_reset"))
            return group

    def take_queued_fault(self, route: str, is_start: bool = False) -> str | None:
        """The next queued fault for this route, if any (no random draw)."""
        with self._lock:
            for queued in self._queued_faults:
                if queued.route is None or queued.route == route:
                    if queued.kind.startswith("lost") and not is_start:
                        continue
                    queued.count -= 1
                    if queued.count <= 0:
                        self._queued_faults.remove(queued)
                    return queued.kind
        return None

    def draw_cdn_fault(self) -> str | None:
        with self._lock:
            if self.options.cdn_error_rate <= 0 or self._cdn_rng.random() >= self.options.cdn_error_rate:
                return None
            kind = self._cdn_rng.choice(("cdn_503", "cdn_empty", "cdn_html"))
            self.faults_injected[kind] += 1
            return kind

    def record_fault(self, kind: str) -> None:
        with self._lock:
            self.faults_injected[kind] += 1

    # -- report ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        report = self.book.report()
        with self._lock:
            return {
                "provider": self.options.provider,
                "requests": {"total": self.requests_total, "by_route": dict(self.requests_by_route)},
                "faults_injected": dict(self.faults_injected),
                **report,
            }
