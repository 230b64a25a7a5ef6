"""Per-provider limits: sliding windows, in-flight count, daily cap, 429 blocks and pauses.

`ProviderLimiter` is the `RequestGate` a provider awaits before every HTTP request. Two fair queues
(requests, execution starts) hand out permission highest-priority-first: when the request budget is
the bottleneck, polls of the executions most likely to be finished go first.
"""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
import heapq
import itertools
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from wfbatch.core.tasks import wait_event
from wfbatch.engine.clock import Clock
from wfbatch.providers.base import RequestKind
from wfbatch.providers.http.headers import RateLimitDialect, x_ratelimit_dialect
from wfbatch.settings import ProviderLimits

# Requests are sent slightly further apart than the window: a server counting by arrival time
# must never see N+1 in its window because one request travelled faster than the one before it.
# A relative margin alone cannot cover that (40 ms of a 2 s window; a loaded machine delays a
# request by more), so an answered request is also re-dated to its answer: see SlidingWindow.
WINDOW_MARGIN = 0.02
# How late after its send a request is taken to have arrived, at most, when it is re-dated to its
# answer: a synchronous generation answers after tens of seconds, but it arrived long before, and
# counting it from its answer would lose that much of every window (a quarter of an OpenAI key's
# 5 images a minute at 20 s a picture).
ARRIVAL_ALLOWANCE = 2.0
# A sleeping waiter wakes at least this often to notice blocks and pauses set meanwhile.
MAX_NAP = 0.5


class ProviderPaused(Exception):
    """The provider is paused (out of credits, daily cap, by the user): do not start anything."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SlidingWindow:
    """At most `limit` events in any span of `window` seconds; `limit=None` means no limit.

    An event is dated when it is let through, before it is sent; the server dates it when it
    arrives, later by a delay that varies (a new connection, a busy server or client). Measured
    from the send alone, a request delayed more than the one a window after it is let through could
    reach the server inside the same window. So once a request is answered its event is re-dated to
    the answer (at most ARRIVAL_ALLOWANCE after its send): the server saw it before answering, so a
    window measured from there has passed on the server's clock too. Answers carry no event of
    their own: the earliest unanswered event is re-dated, which gives the same dates whichever
    request each answer belonged to."""

    def __init__(self, limit: int | None, window: float) -> None:
        self.limit = limit
        self.window = window * (1 + WINDOW_MARGIN)
        self._times: deque[float] = deque()
        self._unanswered: deque[float] = deque()
        """The dates in `_times` still those of the send (a subset, sorted too)."""

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()
        # The same rule, so every date left here is still in `_times`.
        while self._unanswered and self._unanswered[0] <= now - self.window:
            self._unanswered.popleft()

    def used(self, now: float) -> int:
        self._trim(now)
        return len(self._times)

    def wait_time(self, now: float) -> float:
        """Seconds until one more event fits (0 when it fits now)."""
        if self.limit is None:
            return 0.0
        self._trim(now)
        if len(self._times) < self.limit:
            return 0.0
        return self._times[len(self._times) - self.limit] + self.window - now

    def times(self) -> list[float]:
        """The events on record (monotonic seconds)."""
        return list(self._times)

    def reset_to(self, times: list[float]) -> None:
        """Take these events as the record (sorted): windows merged into one. Their answers are
        no longer matched to them: each keeps the date it has."""
        self._times = deque(sorted(times))
        self._unanswered.clear()

    def record(self, now: float) -> None:
        self._times.append(now)
        self._unanswered.append(now)

    def answered(self, now: float) -> None:
        """A request this window let through was answered at `now`: re-date the earliest event
        still dated by its send (none left: an answer to a request not counted here, ignored)."""
        self._trim(now)
        if not self._unanswered:
            return
        sent = self._unanswered.popleft()
        self._times.remove(sent)
        bisect.insort(self._times, min(now, sent + ARRIVAL_ALLOWANCE))

    def wait_time_after(self, ahead: int, now: float) -> float:
        """Seconds until one more event fits once `ahead` others waiting before it have gone (an
        estimate past the events on record: a full window each `limit` events)."""
        if self.limit is None:
            return 0.0
        self._trim(now)
        index = len(self._times) + ahead - self.limit
        if index < 0:
            return 0.0
        if index < len(self._times):
            return max(0.0, self._times[index] + self.window - now)
        return self.window * (1 + (index - len(self._times)) // self.limit)


class _FairQueue:
    """Waiters take turns by (priority desc, arrival): only the head may proceed; the others sleep
    until the head leaves (or a short nap passes, so no wake-up can be missed for long)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, asyncio.Event]] = []
        self._seq = itertools.count()

    async def take(self, priority: float, wait_time: Callable[[], float]) -> None:
        entry = (-priority, next(self._seq), asyncio.Event())
        heapq.heappush(self._heap, entry)
        try:
            while True:
                if self._heap[0] is entry:
                    delay = wait_time()
                    if delay <= 0:
                        return
                    await self._clock.sleep(min(delay, MAX_NAP))
                else:
                    await wait_event(entry[2], MAX_NAP)
                    entry[2].clear()
        finally:
            self._heap.remove(entry)
            heapq.heapify(self._heap)
            if self._heap:
                self._heap[0][2].set()

    def __len__(self) -> int:
        return len(self._heap)


@dataclass
class LimiterSnapshot:
    """What status pages show about one provider's limits right now."""

    requests_in_window: int
    requests_per_minute: int | None
    executions_in_window: int
    executions_per_minute: int | None
    in_flight: int
    max_in_flight: int
    daily_executions: int
    daily_cap: int | None
    blocked_for: float
    block_reason: str | None
    paused: str | None
    requests_sent: int
    rate_limited: int
    next_start_in: float
    next_start_why: str | None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ProviderLimiter:
    def __init__(
        self,
        name: str,
        limits: ProviderLimits,
        clock: Clock,
        *,
        starts_count_as_requests: bool = True,
        daily_starts: int = 0,
        dialect: RateLimitDialect = x_ratelimit_dialect,
    ) -> None:
        self.name = name
        self.dialect = dialect
        """How this provider's answers spell their rate-limit headers."""
        self.limits = limits
        self._clock = clock
        self.starts_count_as_requests = starts_count_as_requests
        window = limits.rate_window_seconds
        self.requests = SlidingWindow(limits.requests_per_minute, window)
        self.executions = SlidingWindow(limits.executions_per_minute, window)
        self._request_queue = _FairQueue(clock)
        self._start_queue = _FairQueue(clock)
        self._blocked_until = 0.0
        self._requests_blocked_until = 0.0
        self._starts_blocked_until = 0.0
        self.block_reason: str | None = None
        self.paused: str | None = None
        self.pause_details: dict[str, Any] = {}
        self.in_flight = 0
        self.answered = False
        """Whether the provider has answered a request with a 2xx yet (a working key and endpoint)."""
        self._day = self._today()
        self.daily_starts = daily_starts
        self.requests_sent = 0
        self.sent_by_kind: dict[str, int] = {k.value: 0 for k in RequestKind}
        self.rate_limited = 0
        self._learned_limit = limits.requests_per_minute is None
        self._last_increase = clock.monotonic()

    # -- RequestGate --------------------------------------------------------------------------

    async def acquire(self, kind: RequestKind, priority: float = 0.0) -> None:
        if kind is RequestKind.START:
            self._check_startable()
            await self._start_queue.take(priority, self._start_wait)
            self._check_startable()
            now = self._clock.monotonic()
            self.executions.record(now)
            self._roll_day()
            self.daily_starts += 1
            if not self.starts_count_as_requests:
                self._count(kind)
                return
        await self._request_queue.take(priority, self._request_wait)
        self.requests.record(self._clock.monotonic())
        self._count(kind)

    def observe(self, kind: RequestKind, status: int, headers: Mapping[str, str]) -> None:
        """Server headers override the local estimate: none left means wait for the reset; an
        advertised limit replaces an unknown one. On a start's answer (where starts have a limit of
        their own) the headers describe the execution window, so only starts wait. Any answer, an
        error too, re-dates its request in the windows it was counted in (see SlidingWindow)."""
        if 200 <= status < 300:
            self.answered = True
        now = self._clock.monotonic()
        if kind is RequestKind.START:
            self.executions.answered(now)
        if kind is not RequestKind.START or self.starts_count_as_requests:
            self.requests.answered(now)
        counts_starts = kind is RequestKind.START and not self.starts_count_as_requests
        window = self.executions if counts_starts else self.requests
        configured = self.limits.executions_per_minute if counts_starts else self.limits.requests_per_minute
        snapshot = self.dialect(headers, self._clock.wall())
        limit = snapshot.limit
        if limit is not None and configured is None and (counts_starts or self._learned_limit):
            window.limit = limit
            if not counts_starts:
                self._learned_limit = False
        remaining, reset = snapshot.remaining, snapshot.reset_at
        if remaining is not None and remaining <= 0 and reset is not None and window.wait_time(now) <= 0:
            # The server says none left while our own window thinks there is room (someone else
            # shares the account, or the limit is unknown): wait for its reset. When our window is
            # full anyway it is the more precise of the two (Reset has one-second resolution).
            wait = reset - self._clock.wall()
            if 0 < wait <= 3600:
                until = now + wait
                if counts_starts:
                    self._starts_blocked_until = max(self._starts_blocked_until, until)
                else:
                    self._requests_blocked_until = max(self._requests_blocked_until, until)
        if status < 400 and self._learned_limit and self.requests.limit is not None:
            # Additive increase: one more request a window for every quiet window.
            now = self._clock.monotonic()
            if now - self._last_increase >= self.requests.window:
                self.requests.limit += 1
                self._last_increase = now

    def reconfigure(self, limits: ProviderLimits) -> dict[str, tuple[Any, Any]]:
        """Take new limits now (SIGHUP); returns what changed, {field: (old, new)}. A request limit
        set to None keeps the current (learned) estimate."""
        old = self.limits
        changes = {
            key: (getattr(old, key), getattr(limits, key))
            for key in ProviderLimits.model_fields
            if getattr(old, key) != getattr(limits, key)
        }
        self.limits = limits
        window = limits.rate_window_seconds * (1 + WINDOW_MARGIN)
        self.requests.window = self.executions.window = window
        if limits.requests_per_minute is not None:
            self.requests.limit = limits.requests_per_minute
            self._learned_limit = False
        self.executions.limit = limits.executions_per_minute
        return changes

    # -- signals from the engine --------------------------------------------------------------

    def on_rate_limited(self, retry_after: float | None, message: str) -> float:
        """A 429: the whole provider waits (not just the job). Returns the wait applied."""
        self.rate_limited += 1
        wait = retry_after if retry_after is not None and retry_after > 0 else self.limits.backoff_initial * 5
        wait = min(wait, 3600.0)
        self._blocked_until = max(self._blocked_until, self._clock.monotonic() + wait)
        self.block_reason = f"rate limited by the provider: {message}"
        if self._learned_limit:
            # Multiplicative decrease of a limit we had to guess.
            used = self.requests.used(self._clock.monotonic())
            self.requests.limit = max(1, used // 2) if used else max(1, (self.requests.limit or 2) // 2)
            self._last_increase = self._clock.monotonic()
        return wait

    def wait_out(self, wait: float, message: str) -> None:
        """Another pool of the same key was told to wait (a 429's Retry-After): so is this one."""
        self._blocked_until = max(self._blocked_until, self._clock.monotonic() + wait)
        self.block_reason = f"rate limited by the provider: {message}"

    def pause(self, reason: str, details: dict[str, Any] | None = None) -> None:
        self.paused = reason
        self.pause_details = details or {}

    def resume(self) -> None:
        self.paused = None
        self.pause_details = {}

    def has_capacity(self) -> bool:
        self._roll_day()
        return (
            self.paused is None
            and self.in_flight < self.limits.max_in_flight
            and not self._daily_cap_reached()
        )

    @property
    def waiting_starts(self) -> int:
        """Starts waiting for their turn in this limiter now."""
        return len(self._start_queue)

    def start_wait_after(self, ahead: int) -> float:
        """Seconds until a new start could go out behind `ahead` starts already waiting."""
        now = self._clock.monotonic()
        waits = [
            self._blocked_until - now,
            self._starts_blocked_until - now,
            self.executions.wait_time_after(ahead, now),
        ]
        if self.starts_count_as_requests:
            waits.append(self.requests.wait_time_after(ahead, now))
        return max(0.0, *waits)

    def blocked_for(self) -> float:
        return max(0.0, self._blocked_until - self._clock.monotonic())

    def hold(self) -> str | None:
        """Why nothing new starts here: a pause (by the user, or for the account), or the daily
        execution cap reached."""
        return self.paused or (self._daily_cap_message() if self._daily_cap_reached() else None)

    def snapshot(self) -> LimiterSnapshot:
        now = self._clock.monotonic()
        self._roll_day()
        wait, why = self.next_start()
        return LimiterSnapshot(
            requests_in_window=self.requests.used(now),
            requests_per_minute=self.requests.limit,
            executions_in_window=self.executions.used(now),
            executions_per_minute=self.executions.limit,
            in_flight=self.in_flight,
            max_in_flight=self.limits.max_in_flight,
            daily_executions=self.daily_starts,
            daily_cap=self.limits.daily_executions,
            blocked_for=round(self.blocked_for(), 3),
            block_reason=self.block_reason if self.blocked_for() > 0 else None,
            paused=self.hold(),
            requests_sent=self.requests_sent,
            rate_limited=self.rate_limited,
            next_start_in=round(wait, 3),
            next_start_why=why,
        )

    # -- internals ----------------------------------------------------------------------------

    def _count(self, kind: RequestKind) -> None:
        self.requests_sent += 1
        self.sent_by_kind[kind.value] += 1

    def _check_startable(self) -> None:
        hold = self.hold()
        if hold is not None:
            raise ProviderPaused(hold)

    def next_start(self) -> tuple[float, str | None]:
        """Seconds until a new start may go out, and the limit that makes it wait (None when none
        does): what a progress display says while jobs queue behind a rate limit."""
        now = self._clock.monotonic()
        waits = [
            (self._blocked_until - now, self.block_reason or "rate limited by the provider"),
            (self._starts_blocked_until - now, "the provider asked to slow down"),
            (self.executions.wait_time(now), f"{self.executions.limit}/min start limit"),
            (self.requests.wait_time(now), f"{self.requests.limit}/min request limit"),
        ]
        wait, why = max(waits, key=lambda item: item[0])
        return (wait, why) if wait > 0 else (0.0, None)

    def _start_wait(self) -> float:
        now = self._clock.monotonic()
        return max(
            self._blocked_until - now, self._starts_blocked_until - now, self.executions.wait_time(now)
        )

    def _request_wait(self) -> float:
        now = self._clock.monotonic()
        return max(
            self._blocked_until - now, self._requests_blocked_until - now, self.requests.wait_time(now)
        )

    def _daily_cap_reached(self) -> bool:
        cap = self.limits.daily_executions
        return cap is not None and self.daily_starts >= cap

    def _daily_cap_message(self) -> str:
        cap = self.limits.daily_executions
        return f"daily execution cap reached ({self.daily_starts}/{cap}); resets at midnight"

    def _today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self._clock.wall()).date()

    def _roll_day(self) -> None:
        today = self._today()
        if today != self._day:
            self._day = today
            self.daily_starts = 0


def start_of_today(now: float) -> float:
    day = dt.datetime.fromtimestamp(now).date()
    return dt.datetime.combine(day, dt.time()).timestamp()


class Slot:
    """One of a provider's in-flight places: taken when a job's task is spawned (so one dispatch
    round cannot overfill the provider), given back exactly once when the task ends."""

    def __init__(self, limiter: ProviderLimiter) -> None:
        self._limiter = limiter
        limiter.in_flight += 1
        self._held = True

    def release(self, _: object = None) -> None:
        if self._held:
            self._held = False
            self._limiter.in_flight -= 1
