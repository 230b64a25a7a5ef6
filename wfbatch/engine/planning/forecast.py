"""How long a batch will take under the configured limits, without sending anything.

A closed formula gets sliding windows wrong (the first N starts go at once, the next N one window
later), so this replays the scheduler's rules on a virtual clock: starts limited by the execution
window, requests (polls, and starts where they count) by the request window, `max_in_flight`
concurrent executions, each taking the expected latency, polled on the engine's schedule.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass

from wfbatch.engine.loop.limiter import WINDOW_MARGIN

# Beyond this many jobs the schedule is periodic: simulate this many, scale the rest.
MAX_SIMULATED_JOBS = 5000


@dataclass(frozen=True)
class ScheduleModel:
    """What the forecast knows about one provider."""

    requests_per_minute: int | None
    executions_per_minute: int | None
    max_in_flight: int
    window: float
    latency: float
    synchronous: bool
    """The start call returns the image (no polls)."""
    starts_count_as_requests: bool
    poll_initial: float
    poll_factor: float
    poll_max: float


class _Window:
    def __init__(self, limit: int | None, window: float) -> None:
        self.limit = limit
        self.window = window * (1 + WINDOW_MARGIN)
        self.times: deque[float] = deque()

    def free_at(self, now: float) -> float:
        if self.limit is None:
            return now
        while self.times and self.times[0] <= now - self.window:
            self.times.popleft()
        if len(self.times) < self.limit:
            return now
        return self.times[len(self.times) - self.limit] + self.window

    def record(self, now: float) -> None:
        self.times.append(now)


def estimate_seconds(jobs: int, model: ScheduleModel) -> float:
    """Seconds from the first start to the last image for `jobs` jobs."""
    if jobs <= 0:
        return 0.0
    simulated = min(jobs, MAX_SIMULATED_JOBS)
    seconds = _simulate(simulated, model)
    return seconds * jobs / simulated if simulated < jobs else seconds


def _simulate(jobs: int, model: ScheduleModel) -> float:
    starts = _Window(model.executions_per_minute, model.window)
    requests = _Window(model.requests_per_minute, model.window)
    # (due time, start time, job number, delay before this poll; -1 for a synchronous call) of
    # executions waiting for their next poll, in the engine's order.
    polls: list[tuple[float, float, int, float]] = []
    waiting = jobs
    in_flight = 0
    finished = 0
    completions = 0
    now = 0.0
    last_done = 0.0
    for _ in range(jobs * 200 + 1000):  # bounded: every pass starts, polls or advances the clock
        if finished == jobs:
            return last_done
        progressed = False
        while waiting and in_flight < model.max_in_flight:
            at = starts.free_at(now)
            if model.starts_count_as_requests:
                at = max(at, requests.free_at(now))
            if at > now:
                break
            starts.record(now)
            if model.starts_count_as_requests:
                requests.record(now)
            waiting -= 1
            in_flight += 1
            progressed = True
            if model.synchronous:
                heapq.heappush(polls, (now + model.latency, now, jobs - waiting, -1))
            else:
                first = model.poll_initial
                if completions >= 3:
                    first = max(first, model.latency * 0.75)  # the engine learns the typical latency
                heapq.heappush(polls, (now + first, now, jobs - waiting, first))
        if polls and polls[0][0] <= now:
            _, started, number, delay = heapq.heappop(polls)
            if delay < 0:  # a synchronous call returning
                in_flight -= 1
                finished += 1
                completions += 1
                last_done = now
                continue
            at = requests.free_at(now)
            if at > now:
                heapq.heappush(polls, (at, started, number, delay))
                continue
            requests.record(now)
            if now - started >= model.latency:
                in_flight -= 1
                finished += 1
                completions += 1
                last_done = now
            else:
                delay = min(model.poll_max, delay * model.poll_factor)
                heapq.heappush(polls, (now + delay, started, number, delay))
            continue
        if progressed:
            continue
        candidates = [polls[0][0]] if polls else []
        if waiting and in_flight < model.max_in_flight:
            at = starts.free_at(now)
            if model.starts_count_as_requests:
                at = max(at, requests.free_at(now))
            candidates.append(at)
        if not candidates:
            break
        now = max(now, min(candidates))
    return math.inf if finished < jobs else last_done
