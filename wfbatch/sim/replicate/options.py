"""Replicate's `wfbatch sim` knobs and description."""

from __future__ import annotations

from typing import Any

import click

from wfbatch.sim.cli import latency_text, total
from wfbatch.sim.options import SimOptions

CLI_OPTIONS: tuple[click.Option, ...] = (
    click.Option(
        ["--retention"],
        type=click.FloatRange(min=0, min_open=True),
        default=3600.0,
        show_default=True,
        help="Replicate: seconds a prediction's outputs are kept before data_removed.",
    ),
)


def describe(options: SimOptions, servers: int) -> str:
    credit = "unlimited" if options.quota is None else f"{options.quota:g} images"
    rate = "unlimited" if options.rpm is None else f"{options.rpm}"
    return "; ".join(
        [
            f"{rate} submits/{options.window:g}s",
            f"credit {credit}",
            f"latency {latency_text(options)}",
            f"outputs kept {options.retention:g}s",
        ]
    )


def made(all_stats: list[dict[str, Any]]) -> str:
    return f"{total(all_stats, 'replicate', 'executions')} executions"
