"""Replicate's `wfbatch sim` knobs and description."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

from wfbatch.sim.cli import latency_text, total
from wfbatch.sim.options import ProviderOptions, SimOptions


@dataclass(frozen=True)
class ReplicateOptions(ProviderOptions):
    """Replicate's own knobs (providers.md §3); the shared `quota` is the images the account can
    still pay for, `rpm` its creates per window."""

    retention: float = 3600.0
    """Seconds after a prediction ends before its input and outputs are removed (`data_removed`);
    an hour at Replicate, shorter to rehearse an output that expired."""
    page_size: int = 100
    """Predictions per page of `GET /predictions`."""

    def __post_init__(self) -> None:
        if self.page_size < 1:
            raise ValueError("page_size must be >= 1")
        if self.retention <= 0:
            raise ValueError("retention must be > 0")


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
            f"outputs kept {ReplicateOptions.of(options).retention:g}s",
        ]
    )


def made(all_stats: list[dict[str, Any]]) -> str:
    return f"{total(all_stats, 'replicate', 'executions')} executions"
