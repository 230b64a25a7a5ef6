from __future__ import annotations

import asyncio

import pytest

from tests.deadlines import patience
from wfbatch.engine.clock import ManualClock
from wfbatch.engine.loop.limiter import (
    ARRIVAL_ALLOWANCE,
    WINDOW_MARGIN,
    ProviderLimiter,
    ProviderPaused,
    SlidingWindow,
)
from wfbatch.providers.base import RequestKind
from wfbatch.settings import ProviderLimits
from wfbatch.sim.limits import SlidingWindow as ServerWindow


def test_sliding_window_never_allows_more_than_limit_in_any_span() -> None:
    clock = ManualClock()
    window = SlidingWindow(limit=10, window=60.0)
    sent: list[float] = []
    for _ in range(35):
        wait = window.wait_time(clock.monotonic())
        clock.advance(wait)
        window.record(clock.monotonic())
        sent.append(clock.monotonic())
        clock.advance(0.5)
    for i, start in enumerate(sent):
        in_span = [t for t in sent[i:] if t < start + 60.0]
        assert len(in_span) <= 10
    # And it is not needlessly slow: 35 requests at 10 a minute take a bit over 3 windows.
    assert sent[-1] - sent[0] < 3 * 60 * 1.05


def test_unlimited_window_never_waits() -> None:
    window = SlidingWindow(limit=None, window=60.0)
    for t in range(100):
        window.record(float(t) / 1000)
    assert window.wait_time(0.1) == 0.0


async def test_a_request_slow_to_arrive_does_not_let_the_next_window_in_early() -> None:
    """The server counts starts by arrival. The first of every other window arrives late (a new
    connection, a busy machine), the rest at once: measured from the send alone, the start a
    window later would land inside the server's window (once 1 in 60 under `-n 4`). Re-dated to
    their answers, none does."""
    clock = ManualClock()
    limits = ProviderLimits(requests_per_minute=10_000, executions_per_minute=10, rate_window_seconds=2.0)
    limiter = ProviderLimiter("wf", limits, clock)
    server = ServerWindow(limit=10, span=2.0)
    for i in range(40):
        await limiter.acquire(RequestKind.START)
        clock.advance(0.3 if i % 20 == 0 else 0.0)  # on its way: longer than the 2 % margin
        verdict = server.peek(clock.wall())
        assert verdict.allowed, (i, verdict)
        server.hit(clock.wall())
        limiter.observe(RequestKind.START, 201, {})  # answered as it arrived


async def test_a_slow_answer_does_not_push_the_next_window_back_by_its_wait() -> None:
    """A synchronous generation answers 30 s after it was sent; it arrived at once. Re-dated to
    its answer it would hold its place in the window 30 s too long: at 2 a minute the third start
    would wait 90 s, not 60 s plus the arrival allowance and margin."""
    clock = ManualClock()
    limiter = ProviderLimiter("oa", ProviderLimits(requests_per_minute=2), clock)
    first = clock.monotonic()
    for _ in range(2):
        await limiter.acquire(RequestKind.START)
    clock.advance(30.0)
    limiter.observe(RequestKind.START, 200, {})
    limiter.observe(RequestKind.START, 200, {})
    await limiter.acquire(RequestKind.START)
    assert clock.monotonic() - first <= 60.0 * (1 + WINDOW_MARGIN) + ARRIVAL_ALLOWANCE


async def test_limiter_counts_requests_and_honours_blocks() -> None:
    clock = ManualClock()
    limiter = ProviderLimiter("p", ProviderLimits(requests_per_minute=2), clock)
    await limiter.acquire(RequestKind.POLL)
    await limiter.acquire(RequestKind.POLL)
    before = clock.monotonic()
    await limiter.acquire(RequestKind.POLL)  # the manual clock "sleeps" until the window frees up
    assert clock.monotonic() - before >= 60.0
    assert limiter.requests_sent == 3
    limiter.on_rate_limited(30.0, "slow down")
    before = clock.monotonic()
    await limiter.acquire(RequestKind.OTHER)
    assert clock.monotonic() - before >= 30.0
    assert limiter.rate_limited == 1


async def test_starts_can_be_counted_apart_from_requests() -> None:
    clock = ManualClock()
    limits = ProviderLimits(requests_per_minute=1, executions_per_minute=5)
    limiter = ProviderLimiter("wf", limits, clock, starts_count_as_requests=False)
    start = clock.monotonic()
    for _ in range(5):
        await limiter.acquire(RequestKind.START)
    assert clock.monotonic() == start  # five starts fit; the 1 req/min budget was not touched
    await limiter.acquire(RequestKind.POLL)
    assert clock.monotonic() == start


async def test_daily_cap_and_pause_refuse_starts() -> None:
    limiter = ProviderLimiter("p", ProviderLimits(daily_executions=1), ManualClock())
    await limiter.acquire(RequestKind.START)
    with pytest.raises(ProviderPaused, match="daily execution cap"):
        await limiter.acquire(RequestKind.START)
    assert not limiter.has_capacity()
    other = ProviderLimiter("q", ProviderLimits(), ManualClock())
    other.pause("out of credits: 10 required, 3 available")
    with pytest.raises(ProviderPaused, match="10 required"):
        await other.acquire(RequestKind.START)


async def test_server_headers_override_the_local_estimate() -> None:
    clock = ManualClock()
    limiter = ProviderLimiter("p", ProviderLimits(), clock)  # limits unknown
    limiter.observe(RequestKind.POLL, 200, {"X-RateLimit-Limit": "7", "X-RateLimit-Remaining": "3"})
    assert limiter.requests.limit == 7
    exhausted = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(clock.wall() + 20)}
    limiter.observe(RequestKind.POLL, 200, exhausted)
    before = clock.monotonic()
    await limiter.acquire(RequestKind.POLL)
    assert clock.monotonic() - before >= 20


async def test_an_exhausted_execution_window_does_not_hold_back_polls() -> None:
    clock = ManualClock()
    limiter = ProviderLimiter("wf", ProviderLimits(), clock, starts_count_as_requests=False)
    limiter.observe(
        RequestKind.START, 201, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(clock.wall() + 30)}
    )
    before = clock.monotonic()
    await limiter.acquire(RequestKind.POLL)
    assert clock.monotonic() == before  # polls go on
    await limiter.acquire(RequestKind.START)
    assert clock.monotonic() - before >= 30  # the next start waits for the reset


class SteppedClock:
    """Time that moves only when the test steps it; a sleeper wakes once its time has come. Unlike
    ManualClock, a sleep does not move time itself: a waiter stays waiting however busy the machine
    is, until the test has put everyone it wants in the queue."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        woken = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, woken))
        await woken

    def step(self, seconds: float) -> None:
        self.now += seconds
        for due, woken in list(self._sleepers):
            if due <= self.now:
                self._sleepers.remove((due, woken))
                if not woken.done():
                    woken.set_result(None)


async def test_higher_priority_waiters_go_first() -> None:
    clock = SteppedClock()
    limiter = ProviderLimiter("p", ProviderLimits(requests_per_minute=1, rate_window_seconds=0.3), clock)
    await limiter.acquire(RequestKind.POLL)  # uses the only slot of this window
    order: list[str] = []

    async def take(name: str, priority: float) -> None:
        await limiter.acquire(RequestKind.POLL, priority)
        order.append(name)

    low = asyncio.create_task(take("low", 1.0))
    await asyncio.sleep(0)  # low queues first; its window stays shut until the clock steps
    high = asyncio.create_task(take("high", 50.0))
    for _ in range(100):  # a window a step: two are enough
        if low.done() and high.done():
            break
        clock.step(0.3)
        await asyncio.sleep(0.01)  # paces the steps only: nobody can pass before the next one
    await asyncio.wait_for(asyncio.gather(low, high), timeout=patience(5))
    assert order == ["high", "low"]


async def test_a_hostile_zero_limit_header_is_ignored() -> None:
    # `X-RateLimit-Limit: 0` once made the learned window hold nothing, and the next acquire indexed
    # an empty deque (IndexError) instead of waiting.
    clock = ManualClock()
    limiter = ProviderLimiter("wf", ProviderLimits(), clock, starts_count_as_requests=False)
    limiter.observe(RequestKind.START, 201, {"X-RateLimit-Limit": "0", "X-RateLimit-Remaining": "5"})
    await limiter.acquire(RequestKind.START)
    assert limiter.executions.limit is None
