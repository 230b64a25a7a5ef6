"""fal's `wfbatch sim` knobs and description."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

from wfbatch.sim.cli import latency_text, total
from wfbatch.sim.options import ProviderOptions, SimOptions


@dataclass(frozen=True)
class FalOptions(ProviderOptions):
    """fal's own knobs (providers.md §2); the shared `quota` is the images the account can still
    pay for, `rpm` its submits per window, `moderation_marker` / `fail_marker` refuse prompts."""

    concurrency: int = 2
    """Requests IN_PROGRESS at once; more wait IN_QUEUE (a new account's 2, up to 40)."""

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")


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
            f"concurrency {FalOptions.of(options).concurrency}",
            f"{rate} submits/{options.window:g}s",
            f"credit {credit}",
            f"latency {latency_text(options)}",
        ]
    )


def made(all_stats: list[dict[str, Any]]) -> str:
    return f"{total(all_stats, 'fal', 'executions')} executions"
