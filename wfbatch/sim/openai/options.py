"""OpenAI's `wfbatch sim` knobs (Images and the Batch API) and description."""

from __future__ import annotations

from typing import Any

import click

from wfbatch.sim.cli import faults_text, latency_text, per_window, total
from wfbatch.sim.options import SimOptions

CLI_OPTIONS: tuple[click.Option, ...] = (
    click.Option(
        ["--images-per-minute"],
        type=click.IntRange(min=1),
        default=None,
        help="OpenAI: images per window [default: unlimited]; --rpm is its requests per window.",
    ),
    click.Option(
        ["--quota-error"],
        type=click.Choice(["insufficient_quota", "billing_hard_limit"]),
        default="insufficient_quota",
        show_default=True,
        help="OpenAI: how a spent quota answers (429 insufficient_quota or 400 billing_hard_limit_reached).",
    ),
    click.Option(
        ["--no-retry-share"],
        type=click.FloatRange(0, 1),
        default=0.0,
        show_default=True,
        help="OpenAI: share of injected 5xx answers that carry x-should-retry: false.",
    ),
    click.Option(
        ["--batch-step"],
        type=click.FloatRange(min=0),
        default=60.0,
        show_default=True,
        help="OpenAI Batch: seconds a batch spends validating, in progress and finalizing (each).",
    ),
    click.Option(
        ["--batch-expire-after"],
        type=click.IntRange(min=0),
        default=None,
        help="OpenAI Batch: a batch expires once this many of its lines are done.",
    ),
    click.Option(
        ["--batch-fail-input"], is_flag=True, help="OpenAI Batch: every input file fails validation."
    ),
)


def describe(options: SimOptions, servers: int) -> str:
    quota = "unlimited" if options.quota is None else f"{options.quota:g} images"
    parts = [
        f"{per_window(options.rpm, 'requests', options.window)}, "
        f"{per_window(options.images_per_minute, 'images', options.window)}",
        f"quota {quota}",
        f"latency {latency_text(options)}",
    ]
    return "; ".join(parts + faults_text(options))


def made(all_stats: list[dict[str, Any]]) -> str:
    return f"{total(all_stats, 'openai', 'generations')} images"
