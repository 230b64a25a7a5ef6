"""OpenAI's side of the simulator's world: the requests and images windows, the quota, what was
generated (and so paid), the Retry-After windows it announced, and the dall-e `url` files.

No I/O; time comes from the caller, chance from a seeded RNG. Thread-safe like `SimState`.
"""

from __future__ import annotations

import math
import random
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from wfbatch.sim.limits import SlidingWindow, WindowVerdict
from wfbatch.sim.openai.batch_book import BatchBook
from wfbatch.sim.openai.options import OpenAIOptions
from wfbatch.sim.options import SimOptions
from wfbatch.sim.state import Clock


@dataclass(frozen=True)
class StoredFile:
    body: bytes
    media_type: str
    expires_at: float


class OpenAIBook:
    def __init__(self, options: SimOptions) -> None:
        self.options = options
        self.own = OpenAIOptions.of(options)
        self._lock = threading.RLock()
        # Own streams: turning faults on does not change latencies or moderation verdicts.
        self._latency_rng = random.Random(f"openai-latency:{options.seed}")
        self._moderation_rng = random.Random(f"openai-moderation:{options.seed}")
        self._verdict_rng = random.Random(f"openai-should-retry:{options.seed}")
        self.requests_window = SlidingWindow(options.rpm, options.window)
        self.images_window = SlidingWindow(self.own.images_per_minute, options.window)
        self.quota_left: float | None = options.quota
        self._announced_until = -math.inf
        self._files: dict[str, StoredFile] = {}
        self._in_flight = 0
        self.peak_concurrency = 0
        self.generations = 0
        """Images produced, i.e. paid for (a lost answer was still paid)."""
        self.generations_by_prompt: Counter[str] = Counter()
        self.rate_limited = 0
        self.quota_refused = 0
        self.moderation_blocked = 0
        self.invalid = 0
        self.early_retries = 0
        self.received: list[dict[str, Any]] = []

    # -- Retry-After windows -----------------------------------------------------------------

    def arrive(self, now: float) -> None:
        """Note a request; one arriving inside an announced Retry-After window is an early retry.
        (With several requests in flight, one sent before the client saw the 429 counts too.)"""
        with self._lock:
            if now < self._announced_until:
                self.early_retries += 1

    def announce(self, until: float) -> None:
        with self._lock:
            self._announced_until = max(self._announced_until, until)

    # -- windows -----------------------------------------------------------------------------

    def admit_request(self, now: float) -> tuple[WindowVerdict, bool]:
        """Count one request against requests/min unless the window is full; (verdict, admitted)."""
        with self._lock:
            verdict = self.requests_window.peek(now)
            if not verdict.allowed:
                self.rate_limited += 1
                return verdict, False
            return self.requests_window.hit(now), True

    def peek_requests(self, now: float) -> WindowVerdict:
        with self._lock:
            return self.requests_window.peek(now)

    def requests_clear_at(self, now: float) -> float:
        with self._lock:
            return self.requests_window.clear_at(now)

    def admit_images(self, now: float, count: int) -> WindowVerdict:
        """Take `count` slots of images/min, or return the refusal (not allowed) without taking any."""
        with self._lock:
            verdict = self.images_window.peek(now, count)
            if not verdict.allowed:
                self.rate_limited += 1
                return verdict
            return self.images_window.hit(now, count)

    # -- quota -------------------------------------------------------------------------------

    def take_quota(self, count: int) -> bool:
        """Spend `count` images of the quota, or refuse (spending nothing) when it does not cover them."""
        with self._lock:
            if self.quota_left is None:
                return True
            if self.quota_left < count:
                self.quota_refused += 1
                return False
            self.quota_left -= count
            return True

    def top_up(self, amount: float) -> float | None:
        with self._lock:
            if self.quota_left is not None:
                self.quota_left += amount
            return self.quota_left

    # -- generation --------------------------------------------------------------------------

    def blocked_by_moderation(self, prompt: str) -> bool:
        o = self.options
        with self._lock:
            unlucky = self._moderation_rng.random() < o.fail_rate
            marked = any(m is not None and m in prompt for m in (o.moderation_marker, o.fail_marker))
            if unlucky or marked:
                self.moderation_blocked += 1
                return True
            return False

    def count_invalid(self) -> None:
        with self._lock:
            self.invalid += 1

    def server_says_final(self) -> bool:
        """Whether an injected 5xx carries `x-should-retry: false` (at `no_retry_share`)."""
        with self._lock:
            return self._verdict_rng.random() < self.own.no_retry_share

    def draw_latency(self) -> float:
        with self._lock:
            return self._latency_rng.uniform(*self.options.latency)

    def begin(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.peak_concurrency = max(self.peak_concurrency, self._in_flight)

    def end(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def generated(self, prompt: str, count: int) -> None:
        with self._lock:
            self.generations += count
            self.generations_by_prompt[prompt] += count

    def received_images(self, seen: list[dict[str, Any]]) -> None:
        """The pictures of a valid edit (endpoint, field, sha256), in order."""
        with self._lock:
            self.received.extend(seen)

    def store_file(self, file_id: str, body: bytes, media_type: str, now: float) -> None:
        with self._lock:
            self._files[file_id] = StoredFile(body, media_type, now + self.own.url_ttl)

    def file(self, file_id: str) -> StoredFile | None:
        with self._lock:
            return self._files.get(file_id)

    # -- report ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "generations": self.generations,
                "generations_by_prompt": dict(self.generations_by_prompt),
                "rate_limited": self.rate_limited,
                "quota_refused": self.quota_refused,
                "moderation_blocked": self.moderation_blocked,
                "invalid_requests": self.invalid,
                "early_retries": self.early_retries,
                "peak_concurrency": self.peak_concurrency,
                "quota_left": self.quota_left,
                "received_images": list(self.received),
            }


class OpenAIBooks:
    """Both of the OpenAI simulator's books: Images and the Batch API."""

    def __init__(self, options: SimOptions, clock: Clock) -> None:
        self.images = OpenAIBook(options)
        self.batches = BatchBook(options)

    def top_up(self, amount: float) -> float | None:
        return self.images.top_up(amount)

    def report(self) -> dict[str, Any]:
        images = self.images.stats()
        return {"rate_limited": images["rate_limited"], "openai": images, "batch": self.batches.stats()}
