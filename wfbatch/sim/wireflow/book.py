"""Wireflow's side of the simulator's world (providers.md §1): executions, credits held and
charged, the plan's rate windows, idempotency records and the rendered images. No I/O; time comes
from the caller (or `clock`), chance from a seeded RNG. Thread-safe like `SimState`."""

from __future__ import annotations

import hashlib
import random
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from wfbatch.sim.images import render_png
from wfbatch.sim.limits import RetryAfterBook, SlidingWindow, WindowVerdict
from wfbatch.sim.options import SimOptions
from wfbatch.sim.state import Clock
from wfbatch.sim.wireflow.options import WireflowOptions, window_limits
from wfbatch.sim.wireflow.workflows import WorkflowCatalog

StartRoute = Literal["execute", "run", "trigger"]

FAILURE_MESSAGES = (
    "Content moderation: the upstream model rejected this prompt (content_policy_violation)",
    "Upstream provider error: generation timed out",
    "Upstream provider error: NSFW content detected in the output",
)


@dataclass
class Execution:
    id: str
    workflow_id: str
    route: StartRoute
    prompt: str
    negative_prompt: str | None
    seed: int | None
    width: int
    height: int
    created_at: float
    ready_at: float
    failure: str | None
    """Decided at creation (seeded): the node error this execution will end with, if any."""
    cost: float
    idempotency_key: str | None
    batch_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: str = "RUNNING"
    ended_at: float | None = None
    credits_used: float | None = None


@dataclass(frozen=True)
class CreditShortfall:
    required: float
    available: float


@dataclass(frozen=True)
class StoredReply:
    """What an idempotent start answered the first time (ASSUMED contract, see `WireflowBook.recall`)."""

    fingerprint: str
    status: int
    body: bytes
    headers: dict[str, str]
    created_at: float


def fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


class WireflowBook:
    def __init__(self, options: SimOptions, clock: Clock) -> None:
        self.options = options
        self.clock = clock
        own = WireflowOptions.of(options)
        self.catalog = WorkflowCatalog(own.workflow_ids)
        self._lock = threading.RLock()
        # Its own stream, so turning faults on does not change latencies or failures.
        self._exec_rng = random.Random(f"exec:{options.seed}")
        limits = window_limits(options)
        self.requests_window = SlidingWindow(limits.requests, options.window)
        self.starts_window = SlidingWindow(limits.executions, options.window)
        self._per_workflow = own.starts_per_workflow
        self._workflow_windows: dict[str, SlidingWindow] = {}
        self.daily_window = SlidingWindow(limits.daily, options.day_seconds)
        self.executions: dict[str, Execution] = {}
        self._running: set[str] = set()
        self.balance: float | None = options.credits
        self.held = 0.0
        self.charged = 0.0
        self._replies: dict[str, StoredReply] = {}
        self._images: dict[str, bytes] = {}
        self.accepted_starts: list[float] = []
        """Server-side times of every start admitted by the rate windows (for window checks)."""
        self.executions_by_key: Counter[str] = Counter()
        self.rate_limited = 0
        self.retry_after = RetryAfterBook()
        """Requests that came before a 429's Retry-After was over (a client that did not wait)."""
        self.peak_concurrency = 0
        self.replays = 0
        self.conflicts = 0

    def settle(self, now: float | None = None) -> None:
        """Finish every execution whose time has come. Executions advance lazily: whenever anyone
        looks, never in the background."""
        now = self.clock() if now is None else now
        with self._lock:
            for exec_id in sorted(self._running):
                execution = self.executions[exec_id]
                if execution.ready_at <= now:
                    self._finish(execution)

    def _finish(self, execution: Execution) -> None:
        self._running.discard(execution.id)
        execution.ended_at = execution.ready_at
        self.held -= execution.cost
        if execution.failure is None:
            # Wireflow charges when a model finishes successfully; a failed model is not charged.
            execution.status = "COMPLETED"
            execution.credits_used = execution.cost
            self.charged += execution.cost
            if self.balance is not None:
                self.balance -= execution.cost
        else:
            execution.status = "FAILED"
            execution.credits_used = 0.0

    # -- rate windows ------------------------------------------------------------------------

    def arrive(self, now: float) -> None:
        """Every API request, on arrival: counted as early when a Retry-After still runs."""
        with self._lock:
            self.retry_after.arrive(now)

    def announce_retry(self, until: float) -> None:
        with self._lock:
            self.retry_after.announce(until)

    def _starts(self, workflow_id: str | None) -> SlidingWindow:
        """The start window a start of this workflow counts in: the key's, or the workflow's own."""
        if not self._per_workflow or workflow_id is None:
            return self.starts_window
        window = self._workflow_windows.get(workflow_id)
        if window is None:
            window = SlidingWindow(self.starts_window.limit, self.starts_window.span)
            self._workflow_windows[workflow_id] = window
        return window

    def check_start(self, now: float, workflow_id: str | None = None) -> tuple[WindowVerdict, str | None]:
        """Peek the execution windows for a start. Returns the verdict to report and, when refused,
        the 429 message."""
        with self._lock:
            per_minute = self._starts(workflow_id).peek(now)
            if not per_minute.allowed:
                self.rate_limited += 1
                return per_minute, "Too many workflow executions. Please try again later."
            daily = self.daily_window.peek(now)
            if not daily.allowed:
                self.rate_limited += 1
                return daily, "Daily execution limit reached for your plan. Please try again tomorrow."
            return per_minute, None

    def hit_start(self, now: float, workflow_id: str | None = None) -> WindowVerdict:
        with self._lock:
            self.daily_window.hit(now)
            self.accepted_starts.append(now)
            return self._starts(workflow_id).hit(now)

    def peek_start(self, now: float, workflow_id: str | None = None) -> WindowVerdict:
        with self._lock:
            return self._starts(workflow_id).peek(now)

    def check_request(self, now: float) -> tuple[WindowVerdict, str | None]:
        """Count one non-start API request against requests/min, unless the window is full."""
        with self._lock:
            verdict = self.requests_window.peek(now)
            if not verdict.allowed:
                self.rate_limited += 1
                return verdict, "Too many requests. Please try again later."
            return self.requests_window.hit(now), None

    def peek_request(self, now: float) -> WindowVerdict:
        with self._lock:
            return self.requests_window.peek(now)

    # -- idempotency (ASSUMED contract) ------------------------------------------------------
    # Wireflow's docs list "idempotency" in the overview but do not pin the header, the replay
    # window or the conflict behaviour. This simulator assumes: header `Idempotency-Key`; the same
    # key with the same method, path and body within 24 (simulated) hours replays the first
    # successful answer with `Idempotent-Replayed: true` (no new execution, no charge, no execution
    # window slot); the same key with a different request is a 409. Error answers are not stored,
    # so a retry after a 402/429/5xx is a fresh attempt.

    def recall(self, key: str, fp: str, now: float) -> StoredReply | Literal["conflict"] | None:
        with self._lock:
            stored = self._replies.get(key)
            if stored is None or stored.created_at <= now - self.options.day_seconds:
                return None
            if stored.fingerprint != fp:
                self.conflicts += 1
                return "conflict"
            self.replays += 1
            return stored

    def remember(self, key: str, reply: StoredReply) -> None:
        with self._lock:
            self._replies[key] = reply

    # -- executions and credits --------------------------------------------------------------

    def available_credits(self) -> float | None:
        with self._lock:
            return None if self.balance is None else self.balance - self.held

    def create_execution(
        self,
        *,
        workflow_id: str,
        route: StartRoute,
        prompt: str,
        negative_prompt: str | None = None,
        seed: int | None = None,
        width: int = 1024,
        height: int = 1024,
        idempotency_key: str | None,
        now: float,
    ) -> Execution | CreditShortfall:
        """Hold the cost and start an execution, or report why the balance is short."""
        o = self.options
        with self._lock:
            self.settle(now)
            available = self.available_credits()
            if available is not None and available < o.cost:
                return CreditShortfall(required=o.cost, available=max(0.0, available))
            latency = self._exec_rng.uniform(*o.latency)
            unlucky = self._exec_rng.random() < o.fail_rate
            message = self._exec_rng.choice(FAILURE_MESSAGES)
            marked = o.fail_marker is not None and o.fail_marker in prompt
            execution = Execution(
                id=f"exec_{uuid.uuid4().hex[:16]}",
                workflow_id=workflow_id,
                route=route,
                prompt=prompt,
                negative_prompt=negative_prompt,
                seed=seed,
                width=width,
                height=height,
                created_at=now,
                ready_at=now + latency,
                failure=message if (unlucky or marked) else None,
                cost=o.cost,
                idempotency_key=idempotency_key,
            )
            self.executions[execution.id] = execution
            self._running.add(execution.id)
            self.held += o.cost
            if idempotency_key is not None:
                self.executions_by_key[idempotency_key] += 1
            self.peak_concurrency = max(self.peak_concurrency, len(self._running))
            return execution

    def execution(self, exec_id: str) -> Execution | None:
        with self._lock:
            return self.executions.get(exec_id)

    def top_up(self, amount: float) -> float | None:
        """Raise the credit balance; None = unlimited."""
        with self._lock:
            if self.balance is not None:
                self.balance += amount
            return self.balance

    def image(self, exec_id: str) -> bytes | None:
        """The PNG of a COMPLETED execution (rendered once)."""
        with self._lock:
            execution = self.executions.get(exec_id)
            if execution is None or execution.status != "COMPLETED":
                return None
            if exec_id not in self._images:
                self._images[exec_id] = render_png(
                    exec_id, execution.prompt, execution.seed, execution.width, execution.height
                )
            return self._images[exec_id]

    def report(self) -> dict[str, Any]:
        """Its part of `/_sim/stats`."""
        self.settle()
        with self._lock:
            return {
                "executions_created": len(self.executions),
                "executions_by_status": dict(Counter(e.status for e in self.executions.values())),
                "executions_by_key": dict(self.executions_by_key),
                "rate_limited": self.rate_limited,
                "early_retries": self.retry_after.early_retries,
                "peak_concurrency": self.peak_concurrency,
                "credits": {
                    "balance": self.balance,
                    "held": self.held,
                    "charged": self.charged,
                    "unlimited": self.balance is None,
                },
                "replays": self.replays,
                "conflicts": self.conflicts,
            }
