"""Stability's side of the simulator's world (providers.md §4): the account's credits, its request
window and lockout, and what was generated (and so paid). No I/O; thread-safe like `SimState`."""

from __future__ import annotations

import hashlib
import random
import threading
from collections import Counter
from typing import Any

from wfbatch.sim.limits import SlidingWindow
from wfbatch.sim.options import SimOptions
from wfbatch.sim.stability.options import StabilityOptions
from wfbatch.sim.state import Clock


class StabilityBook:
    """The account: credits, the request window, the lockout, and what was generated (paid)."""

    def __init__(self, options: SimOptions, clock: Clock) -> None:
        self.options = options
        self.own = StabilityOptions.of(options)
        self._lock = threading.RLock()
        self._latency_rng = random.Random(f"stability-latency:{options.seed}")
        self.window = SlidingWindow(options.rpm or 150, self.own.stability_window)
        self.balance: float | None = options.credits
        self.locked_until = 0.0
        self.generations = 0
        self.generations_by_prompt: Counter[str] = Counter()
        self.charged = 0.0
        self.rate_limited = 0
        self.lockouts = 0
        self.requests_during_lockout = 0
        self.moderation_blocked = 0
        self.filtered = 0
        self.payment_refused = 0
        self.invalid = 0
        self.forms: list[dict[str, str]] = []
        """Every valid form received, in order (tests check what reached the server)."""
        self.received: list[dict[str, Any]] = []
        """Every image part of a valid request: endpoint, field, sha256, bytes (in order)."""
        self.upscales: Counter[str] = Counter()
        self.inpaints = 0
        self._results: dict[str, tuple[str, float, bytes, str]] = {}

    def admit(self, now: float) -> bool:
        """False = 429: locked out, or this request broke the window (which starts a lockout)."""
        with self._lock:
            if now < self.locked_until:
                self.requests_during_lockout += 1
                self.rate_limited += 1
                return False
            if not self.window.peek(now).allowed:
                self.locked_until = now + self.own.lockout
                self.lockouts += 1
                self.rate_limited += 1
                return False
            self.window.hit(now)
            return True

    def charge(self, cost: float) -> bool:
        with self._lock:
            if self.balance is not None and self.balance < cost:
                self.payment_refused += 1
                return False
            if self.balance is not None:
                self.balance -= cost
            self.charged += cost
            return True

    def made(self, prompt: str) -> None:
        with self._lock:
            self.generations += 1
            self.generations_by_prompt[prompt] += 1

    def received_files(self, endpoint: str, files: dict[str, bytes]) -> None:
        with self._lock:
            for name, data in files.items():
                digest = hashlib.sha256(data).hexdigest()
                seen = {"endpoint": endpoint, "field": name, "sha256": digest, "bytes": len(data)}
                self.received.append(seen)

    def upscaled(self, kind: str) -> None:
        with self._lock:
            self.upscales[kind] += 1

    def inpainted(self) -> None:
        with self._lock:
            self.inpaints += 1

    def start_result(self, result_id: str, key: str, ready_at: float, data: bytes, media_type: str) -> None:
        """A creative upscale, fetched from /v2beta/results/{id} by the key that started it."""
        with self._lock:
            self._results[result_id] = (key, ready_at, data, media_type)

    def result(self, result_id: str, key: str, now: float) -> tuple[bytes, str] | str | None:
        """The image, "running", or None (no such id for this key)."""
        with self._lock:
            found = self._results.get(result_id)
            if found is None or found[0] != key:
                return None
            if now < found[1]:
                return "running"
            return found[2], found[3]

    def latency(self) -> float:
        with self._lock:
            return self._latency_rng.uniform(*self.options.latency)

    def top_up(self, amount: float) -> float | None:
        with self._lock:
            if self.balance is not None:
                self.balance += amount
            return self.balance

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "generations": self.generations,
                "generations_by_prompt": dict(self.generations_by_prompt),
                "charged": self.charged,
                "balance": self.balance,
                "rate_limited": self.rate_limited,
                "lockouts": self.lockouts,
                "requests_during_lockout": self.requests_during_lockout,
                "moderation_blocked": self.moderation_blocked,
                "filtered": self.filtered,
                "payment_refused": self.payment_refused,
                "invalid": self.invalid,
                "received_images": list(self.received),
                "upscales": dict(self.upscales),
                "inpaints": self.inpaints,
            }

    def report(self) -> dict[str, Any]:
        """Its part of `/_sim/stats`."""
        book = self.stats()
        return {"rate_limited": book["rate_limited"], "stability": book}
