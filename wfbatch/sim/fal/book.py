"""fal's side of the simulator's world (providers.md §2): the account's concurrency (requests
beyond it wait IN_QUEUE, in order), its credit (a locked account refuses submits with 403), what
was executed and paid, cancellations and the Retry-After windows announced.

Requests advance lazily, whenever anyone looks; time comes from the caller, chance from seeded
RNGs. Thread-safe like `SimState`.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from wfbatch.sim.fal.options import FalOptions
from wfbatch.sim.fal.storage import FalStorage
from wfbatch.sim.limits import RetryAfterBook, SlidingWindow, WindowVerdict
from wfbatch.sim.options import SimOptions
from wfbatch.sim.state import Clock

MODERATION_MESSAGE = (
    "The content could not be processed because it contained material flagged by a content checker."
)
CANCELED_MESSAGE = "Request was cancelled by the user"


@dataclass
class FalRequest:
    id: str
    app: str
    """`owner/name`: where the status, result and cancel URLs live (never the subpath)."""
    endpoint: str
    prompt: str
    seed: int | None
    width: int
    height: int
    output_format: str
    num_images: int
    created_at: float
    latency: float
    refused: bool
    """Decided at submit: the content checker will refuse it (a 422 on the result)."""
    status: str = "IN_QUEUE"
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None
    error_type: str | None = None
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def ends_at(self) -> float:
        assert self.started_at is not None
        return self.started_at + self.latency


class FalBook:
    def __init__(self, options: SimOptions, clock: Clock) -> None:
        self.options = options
        self.clock = clock
        self.own = FalOptions.of(options)
        self._lock = threading.RLock()
        self._latency_rng = random.Random(f"fal-latency:{options.seed}")
        self._moderation_rng = random.Random(f"fal-moderation:{options.seed}")
        self.submits_window = SlidingWindow(options.rpm, options.window)
        self.retry_after = RetryAfterBook()
        self.credit_left: float | None = options.quota
        self.held = 0
        self.requests: dict[str, FalRequest] = {}
        self._queue: list[FalRequest] = []
        self._running: list[FalRequest] = []
        self._slot_freed_at = 0.0
        self.executions_by_prompt: Counter[str] = Counter()
        self.completed = 0
        self.moderation_blocked = 0
        self.locked_refusals = 0
        self.rate_limited = 0
        self.canceled = 0
        self.peak_in_progress = 0
        self.max_in_queue = 0
        self.storage = FalStorage()

    # -- arrival -----------------------------------------------------------------------------

    def arrive(self, now: float) -> None:
        with self._lock:
            self.retry_after.arrive(now)

    def admit_submit(self, now: float) -> WindowVerdict:
        with self._lock:
            verdict = self.submits_window.peek(now)
            if not verdict.allowed:
                self.rate_limited += 1
                self.retry_after.announce(now + verdict.retry_after)
                return verdict
            return self.submits_window.hit(now)

    def submit(
        self,
        *,
        endpoint: str,
        prompt: str,
        seed: int | None,
        size: tuple[int, int],
        output_format: str,
        num_images: int,
        now: float,
    ) -> FalRequest | None:
        """Queue a request, or None when the account is locked (its credit cannot cover it)."""
        o = self.options
        with self._lock:
            self.settle(now)
            if self.credit_left is not None and self.credit_left - self.held < num_images:
                self.locked_refusals += 1
                return None
            marked = any(m is not None and m in prompt for m in (o.moderation_marker, o.fail_marker))
            unlucky = self._moderation_rng.random() < o.fail_rate
            request = FalRequest(
                id=str(uuid.uuid4()),
                app="/".join(endpoint.split("/")[:2]),
                endpoint=endpoint,
                prompt=prompt,
                seed=seed,
                width=size[0],
                height=size[1],
                output_format=output_format,
                num_images=num_images,
                created_at=now,
                latency=self._latency_rng.uniform(*o.latency),
                refused=marked or unlucky,
            )
            self.requests[request.id] = request
            self._queue.append(request)
            self.held += num_images
            self.executions_by_prompt[prompt] += 1
            self.settle(now)
            self.max_in_queue = max(self.max_in_queue, len(self._queue))
            return request

    # -- progress ----------------------------------------------------------------------------

    def settle(self, now: float) -> None:
        """Start queued requests as slots free up and finish the ones whose time has come, in the
        order it would have happened."""
        with self._lock:
            while True:
                while len(self._running) < self.own.concurrency and self._queue:
                    request = self._queue.pop(0)
                    request.started_at = max(request.created_at, self._slot_freed_at)
                    request.status = "IN_PROGRESS"
                    self._running.append(request)
                    self.peak_in_progress = max(self.peak_in_progress, len(self._running))
                if not self._running:
                    return
                first = min(self._running, key=lambda r: r.ends_at)
                if first.ends_at > now:
                    return
                self._finish(first, first.ends_at)

    def _finish(self, request: FalRequest, at: float, *, canceled: bool = False) -> None:
        if request in self._running:
            self._running.remove(request)
            self._slot_freed_at = at
        if request in self._queue:
            self._queue.remove(request)
        request.status = "COMPLETED"
        request.ended_at = at
        self.held -= request.num_images
        if canceled:
            request.error, request.error_type = CANCELED_MESSAGE, "request_cancelled"
            self.canceled += 1
        elif request.refused:
            # 422s "may be charged" (§2.8); this simulator does not, so credit figures stay simple.
            request.error, request.error_type = MODERATION_MESSAGE, "content_policy_violation"
            self.moderation_blocked += 1
        else:
            self.completed += 1
            if self.credit_left is not None:
                self.credit_left -= request.num_images

    def look(self, request_id: str, now: float) -> tuple[FalRequest | None, int | None]:
        """The request and, while it waits, its queue position (0 = next to start)."""
        with self._lock:
            self.settle(now)
            request = self.requests.get(request_id)
            if request is None or request not in self._queue:
                return request, None
            return request, self._queue.index(request)

    def cancel(self, request_id: str, now: float) -> str:
        """fal's documented cancel statuses: OK (removed from the queue), CANCELLATION_REQUESTED
        (running: the runner is told), ALREADY_COMPLETED, NOT_FOUND."""
        with self._lock:
            self.settle(now)
            request = self.requests.get(request_id)
            if request is None:
                return "NOT_FOUND"
            if request.status == "COMPLETED":
                return "ALREADY_COMPLETED"
            queued = request in self._queue
            self._finish(request, now, canceled=True)
            return "OK" if queued else "CANCELLATION_REQUESTED"

    def top_up(self, amount: float) -> float | None:
        with self._lock:
            if self.credit_left is not None:
                self.credit_left += amount
            return self.credit_left

    def draw_latency(self) -> float:
        with self._lock:
            return self._latency_rng.uniform(*self.options.latency)

    # -- report ------------------------------------------------------------------------------

    def stats(self, now: float) -> dict[str, Any]:
        with self._lock:
            self.settle(now)
            return {
                "executions": sum(self.executions_by_prompt.values()),
                "executions_by_prompt": dict(self.executions_by_prompt),
                "completed": self.completed,
                "moderation_blocked": self.moderation_blocked,
                "locked_refusals": self.locked_refusals,
                "canceled": self.canceled,
                "rate_limited": self.rate_limited,
                "early_retries": self.retry_after.early_retries,
                "in_queue": len(self._queue),
                "in_progress": len(self._running),
                "peak_in_progress": self.peak_in_progress,
                "max_in_queue": self.max_in_queue,
                "credit_left": self.credit_left,
                "uploads": list(self.storage.uploads),
                "received_images": list(self.storage.received),
            }

    def report(self) -> dict[str, Any]:
        """Its part of `/_sim/stats`."""
        book = self.stats(self.clock())
        return {"rate_limited": book["rate_limited"], "fal": book}
