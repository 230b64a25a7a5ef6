"""Replicate's side of the simulator's world (providers.md §3): predictions and their lifecycle
(`starting` → `processing` → `succeeded` | `failed` | `canceled`), output retention (after
`retention` seconds inputs and outputs are removed: `data_removed`), the account's credit (a 402
once it cannot cover a prediction), creates/min and the Retry-After windows announced.

Predictions advance lazily, whenever anyone looks. Thread-safe like `SimState`.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from wfbatch.sim.limits import RetryAfterBook, SlidingWindow, WindowVerdict
from wfbatch.sim.options import SimOptions
from wfbatch.sim.replicate.files import ReplicateFiles
from wfbatch.sim.replicate.options import ReplicateOptions
from wfbatch.sim.state import Clock

NSFW = "NSFW content detected. Try running it again, or try a different prompt."


@dataclass
class Prediction:
    id: str
    model: str
    version: str
    input: dict[str, Any]
    prompt: str
    seed: int | None
    size: tuple[int, int]
    output_format: str
    outputs: int
    created_at: float
    latency: float
    failure: str | None
    status: str = "starting"
    started_at: float | None = None
    completed_at: float | None = None
    data_removed: bool = False
    files: dict[str, bytes] = field(default_factory=dict)


class ReplicateBook:
    def __init__(self, options: SimOptions, clock: Clock) -> None:
        self.options = options
        self.clock = clock
        self.own = ReplicateOptions.of(options)
        self._lock = threading.RLock()
        self._latency_rng = random.Random(f"replicate-latency:{options.seed}")
        self._moderation_rng = random.Random(f"replicate-moderation:{options.seed}")
        self.creates_window = SlidingWindow(options.rpm, options.window)
        self.retry_after = RetryAfterBook()
        self.credit_left: float | None = options.quota
        self.held = 0
        self.predictions: dict[str, Prediction] = {}
        self.order: list[str] = []
        """Prediction ids, oldest first (the list answers newest first)."""
        self.executions_by_prompt: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.files = ReplicateFiles()

    def arrive(self, now: float) -> None:
        with self._lock:
            self.retry_after.arrive(now)

    def admit_create(self, now: float) -> WindowVerdict:
        with self._lock:
            verdict = self.creates_window.peek(now)
            if not verdict.allowed:
                self.counts["rate_limited"] += 1
                self.retry_after.announce(now + verdict.retry_after)
                return verdict
            return self.creates_window.hit(now)

    def peek_creates(self, now: float) -> WindowVerdict:
        with self._lock:
            return self.creates_window.peek(now)

    def create(
        self,
        *,
        model: str,
        version: str,
        model_input: dict[str, Any],
        size: tuple[int, int],
        output_format: str,
        outputs: int,
        now: float,
    ) -> Prediction | None:
        """A new prediction, or None when the account's credit cannot cover it (a 402)."""
        o = self.options
        prompt = str(model_input.get("prompt", ""))
        with self._lock:
            self.settle(now)
            if self.credit_left is not None and self.credit_left - self.held < outputs:
                self.counts["billing_refusals"] += 1
                return None
            marked = any(m is not None and m in prompt for m in (o.moderation_marker, o.fail_marker))
            unlucky = self._moderation_rng.random() < o.fail_rate
            seed = model_input.get("seed")
            prediction = Prediction(
                id=uuid.uuid4().hex[:20],
                model=model,
                version=version,
                input=dict(model_input),
                prompt=prompt,
                seed=seed if isinstance(seed, int) else None,
                size=size,
                output_format=output_format,
                outputs=outputs,
                created_at=now,
                latency=self._latency_rng.uniform(*o.latency),
                failure=NSFW if (marked or unlucky) else None,
            )
            self.predictions[prediction.id] = prediction
            self.order.append(prediction.id)
            self.held += outputs
            self.executions_by_prompt[prompt] += 1
            self.settle(now)
            return prediction

    def settle(self, now: float) -> None:
        with self._lock:
            for prediction in self.predictions.values():
                self._advance(prediction, now)

    def _advance(self, p: Prediction, now: float) -> None:
        if p.status in ("starting", "processing"):
            if now >= p.created_at + p.latency * 0.2:
                p.status, p.started_at = "processing", p.created_at + p.latency * 0.2
            if now >= p.created_at + p.latency:
                self._end(p, p.created_at + p.latency, "failed" if p.failure else "succeeded")
        if p.completed_at is not None and not p.data_removed and now >= p.completed_at + self.own.retention:
            # API predictions' inputs, outputs and files are deleted after an hour (§3.3).
            p.data_removed, p.input, p.files = True, {}, {}
            self.counts["removed"] += 1

    def _end(self, p: Prediction, at: float, status: str) -> None:
        p.status, p.completed_at = status, at
        self.held -= p.outputs
        self.counts[status] += 1
        if status == "failed":
            self.counts["moderation_blocked"] += 1
        if status == "succeeded" and self.credit_left is not None:
            self.credit_left -= p.outputs

    def get(self, prediction_id: str, now: float) -> Prediction | None:
        with self._lock:
            prediction = self.predictions.get(prediction_id)
            if prediction is not None:
                self._advance(prediction, now)
            return prediction

    def cancel(self, prediction_id: str, now: float) -> Prediction | None:
        with self._lock:
            prediction = self.get(prediction_id, now)
            if prediction is not None and prediction.completed_at is None:
                self._end(prediction, now, "canceled")
            return prediction

    def page(self, offset: int, now: float) -> tuple[list[Prediction], int | None]:
        """Newest first, `page_size` at a time; (items, next offset or None)."""
        with self._lock:
            self.settle(now)
            newest_first = [self.predictions[i] for i in reversed(self.order)]
            end = offset + self.own.page_size
            self.counts["list_pages"] += 1
            return newest_first[offset:end], end if end < len(newest_first) else None

    def count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def top_up(self, amount: float) -> float | None:
        with self._lock:
            if self.credit_left is not None:
                self.credit_left += amount
            return self.credit_left

    def stats(self, now: float) -> dict[str, Any]:
        with self._lock:
            self.settle(now)
            return {
                "executions": sum(self.executions_by_prompt.values()),
                "executions_by_prompt": dict(self.executions_by_prompt),
                "succeeded": self.counts["succeeded"],
                "failed": self.counts["failed"],
                "canceled": self.counts["canceled"],
                "moderation_blocked": self.counts["moderation_blocked"],
                "billing_refusals": self.counts["billing_refusals"],
                "rate_limited": self.counts["rate_limited"],
                "early_retries": self.retry_after.early_retries,
                "removed": self.counts["removed"],
                "expired_downloads": self.counts["expired_downloads"],
                "list_pages": self.counts["list_pages"],
                "credit_left": self.credit_left,
                "uploads": list(self.files.uploads),
                "received_images": list(self.files.received),
            }

    def report(self) -> dict[str, Any]:
        """Its part of `/_sim/stats`."""
        book = self.stats(self.clock())
        return {"rate_limited": book["rate_limited"], "replicate": book}
