"""What a simulator package declares for `wfbatch sim`: its own command-line options (each named
after the field it sets, of its own options or of `SimOptions`) and how a run is described at start
and summed up at stop."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wfbatch.sim.options import SimOptions


def per_window(value: int | None, what: str, window: float) -> str:
    return f"{'unlimited' if value is None else value} {what}/{window:g}s"


def latency_text(options: SimOptions) -> str:
    lo, hi = options.latency
    return f"{lo:g}-{hi:g}s"


def faults_text(options: SimOptions) -> list[str]:
    """The injected-fault part of a description, if any."""
    if not options.error_rate:
        return []
    return [f"error-rate {options.error_rate:g} ({','.join(options.faults)})"]


def total(all_stats: Iterable[dict[str, Any]], *path: str) -> int:
    """A counter summed over every server of a run (`path` into `/_sim/stats`)."""
    count = 0
    for stats in all_stats:
        value: Any = stats
        for key in path:
            value = value[key]
        count += int(value)
    return count
