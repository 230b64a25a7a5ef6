"""The simulator's whole world, in memory: executions, credits, rate windows, idempotency records,
queued faults and the counters `/_sim/stats` reports. No I/O here; time comes from `clock`, chance
from seeded RNGs. Thread-safe, because tests read it from outside the server's thread."""

from __future__ import annotations

import hashlib
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from wfbatch.sim.comfyui.server import ComfyServer
from wfbatch.sim.fal.book import FalBook
from wfbatch.sim.images import render_png
from wfbatch.sim.limits import SlidingWindow, WindowVerdict
from wfbatch.sim.openai.batch_book import BatchBook
from wfbatch.sim.openai.book import OpenAIBook
from wfbatch.sim.options import FAULT_KINDS, SimOptions
from wfbatch.sim.replicate.book import ReplicateBook
from wfbatch.sim.stability.routes import StabilityBook
from wfbatch.sim.wire import WireFaults
from wfbatch.sim.wireflow.workflows import WorkflowCatalog

Clock = Callable[[], float]
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
    """What an idempotent start answered the first time (ASSUMED contract, see `SimState.recall`)."""

    fingerprint: str
    status: int
    body: bytes
    headers: dict[str, str]
    created_at: float


@dataclass
class QueuedFault:
    kind: str
    route: str | None
    count: int


def fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


class SimState:
    def __init__(self, options: SimOptions | None = None, *, clock: Clock = time.time) -> None:
        self.options = options or SimOptions()
        self.clock = clock
        self.catalog = WorkflowCatalog(self.options.workflow_ids)
        self._lock = threading.RLock()
        # Separate streams so turning faults on does not change latencies or failures.
        self._exec_rng = random.Random(f"exec:{self.options.seed}")
        self._fault_rng = random.Random(f"fault:{self.options.seed}")
        self._cdn_rng = random.Random(f"cdn:{self.options.seed}")
        o = self.options
        self.requests_window = SlidingWindow(o.requests_per_window, o.window)
        self.starts_window = SlidingWindow(o.executions_per_window, o.window)
        self.daily_window = SlidingWindow(o.executions_per_day, o.day_seconds)
        self.executions: dict[str, Execution] = {}
        self._running: set[str] = set()
        self.balance: float | None = o.credits
        self.held = 0.0
        self.charged = 0.0
        self._replies: dict[str, StoredReply] = {}
        self._queued_faults: list[QueuedFault] = []
        self._images: dict[str, bytes] = {}
        self.accepted_starts: list[float] = []
        """Server-side times of every start admitted by the rate windows (for window checks)."""
        self.requests_total = 0
        self.requests_by_route: Counter[str] = Counter()
        self.executions_by_key: Counter[str] = Counter()
        self.rate_limited = 0
        self.peak_concurrency = 0
        self.faults_injected: Counter[str] = Counter()
        self.replays = 0
        self.conflicts = 0
        self.wire = WireFaults()
        """Faults for the next API requests whatever the route set (see wire.py)."""
        self.openai = OpenAIBook(o)
        self.openai_batches = BatchBook(o)
        """The OpenAI route set's books (idle when the simulator speaks Wireflow)."""
        self.fal = FalBook(o)
        """fal's queue, concurrency and credit (idle unless the simulator speaks fal)."""
        self.replicate = ReplicateBook(o)
        """Replicate's predictions, retention and credit (idle unless it speaks Replicate)."""
        self.stability = StabilityBook(o)
        """Stability's account (idle unless the simulator speaks Stability)."""
        self.comfyui = ComfyServer(o, clock)
        """ComfyUI's queue, history and output folder (idle unless it speaks ComfyUI)."""

    # -- bookkeeping -------------------------------------------------------------------------

    def count_request(self, route: str) -> None:
        with self._lock:
            self.requests_total += 1
            self.requests_by_route[route] += 1

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

    # -- rate windows ------------------------------------------------------------------------

    def check_start(self, now: float) -> tuple[WindowVerdict, str | None]:
        """Peek the execution windows for a start. Returns the verdict to report and, when refused,
        the 429 message."""
        with self._lock:
            per_minute = self.starts_window.peek(now)
            if not per_minute.allowed:
                self.rate_limited += 1
                return per_minute, "Too many workflow executions. Please try again later."
            daily = self.daily_window.peek(now)
            if not daily.allowed:
                self.rate_limited += 1
                return daily, "Daily execution limit reached for your plan. Please try again tomorrow."
            return per_minute, None

    def hit_start(self, now: float) -> WindowVerdict:
        with self._lock:
            self.daily_window.hit(now)
            self.accepted_starts.append(now)
            return self.starts_window.hit(now)

    def peek_start(self, now: float) -> WindowVerdict:
        with self._lock:
            return self.starts_window.peek(now)

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
        """Raise the balance (Wireflow credits, or OpenAI's quota in images); None = unlimited."""
        if self.options.provider == "openai":
            return self.openai.top_up(amount)
        if self.options.provider == "fal":
            return self.fal.top_up(amount)
        if self.options.provider == "replicate":
            return self.replicate.top_up(amount)
        if self.options.provider == "stability":
            return self.stability.top_up(amount)
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
        if self.options.provider == "openai":
            return self._openai_stats()
        if self.options.provider == "fal":
            return self._book_stats("fal", self.fal.stats(self.clock()))
        if self.options.provider == "replicate":
            return self._book_stats("replicate", self.replicate.stats(self.clock()))
        if self.options.provider in ("stability", "comfyui"):
            with self._lock:
                book = (
                    self.stability.stats() if self.options.provider == "stability" else self.comfyui.stats()
                )
                return {
                    "provider": self.options.provider,
                    "requests": {"total": self.requests_total, "by_route": dict(self.requests_by_route)},
                    "rate_limited": book.get("rate_limited", 0),
                    self.options.provider: book,
                }
        self.settle()
        with self._lock:
            by_status = Counter(e.status for e in self.executions.values())
            return {
                "requests": {"total": self.requests_total, "by_route": dict(self.requests_by_route)},
                "executions_created": len(self.executions),
                "executions_by_status": dict(by_status),
                "executions_by_key": dict(self.executions_by_key),
                "rate_limited": self.rate_limited,
                "peak_concurrency": self.peak_concurrency,
                "credits": {
                    "balance": self.balance,
                    "held": self.held,
                    "charged": self.charged,
                    "unlimited": self.balance is None,
                },
                "faults_injected": dict(self.faults_injected),
                "replays": self.replays,
                "conflicts": self.conflicts,
                "provider": "wireflow",
            }

    def _book_stats(self, name: str, book: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return {
                "provider": name,
                "requests": {"total": self.requests_total, "by_route": dict(self.requests_by_route)},
                "rate_limited": book["rate_limited"],
                "faults_injected": dict(self.faults_injected),
                name: book,
            }

    def _openai_stats(self) -> dict[str, Any]:
        with self._lock:
            images = self.openai.stats()
            return {
                "provider": "openai",
                "requests": {"total": self.requests_total, "by_route": dict(self.requests_by_route)},
                "rate_limited": images["rate_limited"],
                "faults_injected": dict(self.faults_injected),
                "openai": images,
                "batch": self.openai_batches.stats(),
            }
