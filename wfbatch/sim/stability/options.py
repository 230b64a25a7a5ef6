"""Stability's `wfbatch sim` knobs and description."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

from wfbatch.sim.cli import latency_text, total
from wfbatch.sim.options import ProviderOptions, SimOptions


@dataclass(frozen=True)
class StabilityOptions(ProviderOptions):
    """Stability's own knobs (providers.md §4); the shared `rpm` is its requests per
    `stability_window` (default 150), `credits` its balance, `moderation_marker` its 403
    content_moderation."""

    stability_window: float = 10.0
    lockout: float = 60.0
    """Seconds a 429 locks the account out (Stability: about 60 s, no Retry-After)."""
    filter_marker: str | None = None
    """Prompts containing this text come back blurred with `finish-reason: CONTENT_FILTERED` (charged)."""


CLI_OPTIONS: tuple[click.Option, ...] = (
    click.Option(
        ["--stability-window"],
        type=click.FloatRange(min=0, min_open=True),
        default=10.0,
        show_default=True,
        help="Stability: seconds of its rate window (--rpm requests per window, default 150).",
    ),
    click.Option(
        ["--lockout"],
        type=click.FloatRange(min=0),
        default=60.0,
        show_default=True,
        help="Stability: seconds a 429 locks the account out (no Retry-After, like Stability).",
    ),
    click.Option(
        ["--filter-marker"],
        default=None,
        help="Stability: prompts containing this text come back blurred with finish-reason "
        "CONTENT_FILTERED (charged).",
    ),
)


def describe(options: SimOptions, servers: int) -> str:
    own = StabilityOptions.of(options)
    credits = "unlimited" if options.credits is None else f"{options.credits:g}"
    rate = options.rpm if options.rpm is not None else 150
    parts = [
        f"{rate} requests/{own.stability_window:g}s, {own.lockout:g}s lockout after a 429",
        f"credits {credits}",
        f"latency {latency_text(options)}",
    ]
    if options.moderation_marker:
        parts.append(f"403 content_moderation for {options.moderation_marker!r}")
    if own.filter_marker:
        parts.append(f"CONTENT_FILTERED for {own.filter_marker!r}")
    return "; ".join(parts)


def made(all_stats: list[dict[str, Any]]) -> str:
    return f"{total(all_stats, 'stability', 'generations')} images"
