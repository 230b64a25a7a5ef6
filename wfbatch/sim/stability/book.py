"""Stability's side of the simulator's world (providers.md §4): the account's credits, its request
window and lockout, and what was generated (and so paid). No I/O; thread-safe like `SimState`."""

from __future__ import annotations

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
            }

    def report(self) -> dict[str, Any]:
        """Its part of `/_sim/stats`."""
        book = self.stats()
        return {"rate_limited": book["rate_limited"], "stability": book}
