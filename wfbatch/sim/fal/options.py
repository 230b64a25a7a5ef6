"""fal's `wfbatch sim` knobs and description."""

from __future__ import annotations

from typing import Any

import click

from wfbatch.sim.cli import latency_text, total
from wfbatch.sim.options import SimOptions

CLI_OPTIONS: tuple[click.Option, ...] = (
    click.Option(
        ["--concurrency"],
        type=click.IntRange(min=1),
        default=2,
        show_default=True,
        help="fal: requests in progress at once; more wait IN_QUEUE.",
    ),
)


def describe(options: SimOptions, servers: int) -> str:
    credit = "unlimited" if options.quota is None else f"{options.quota:g} images"
    rate = "unlimited" if options.rpm is None else f"{options.rpm}"
    return "; ".join(
        [
            f"concurrency {options.concurrency}",
            f"{rate} submits/{options.window:g}s",
            f"credit {credit}",
            f"latency {latency_text(options)}",
        ]
    )


def made(all_stats: list[dict[str, Any]]) -> str:
    return f"{total(all_stats, 'fal', 'executions')} executions"
