"""Wireflow's `wfbatch sim` knobs and description."""

from __future__ import annotations

from typing import Any

import click

from wfbatch.sim.cli import faults_text, latency_text, total
from wfbatch.sim.options import SimOptions
from wfbatch.sim.wireflow.plans import WireflowPlan

CLI_OPTIONS: tuple[click.Option, ...] = (
    click.Option(
        ["--plan"],
        type=click.Choice([p.value for p in WireflowPlan]),
        default=WireflowPlan.FREE.value,
        show_default=True,
        help="Wireflow plan whose rate limits to apply.",
    ),
    click.Option(
        ["--error-style"],
        type=click.Choice(["string", "object"]),
        default="string",
        show_default=True,
        help='Wireflow: {"error": "msg"} or {"error": {"type", "code", "message"}}.',
    ),
)


def describe(options: SimOptions, servers: int) -> str:
    daily = options.executions_per_day
    credits = "unlimited" if options.credits is None else f"{options.credits:g}"
    parts = [
        f"plan {options.plan.value}: {options.requests_per_window} req + "
        f"{options.executions_per_window} executions per {options.window:g}s, "
        f"{'no daily cap' if daily is None else f'{daily}/day'}",
        f"credits {credits} at {options.cost:g}/execution",
        f"latency {latency_text(options)}",
    ]
    if options.fail_rate:
        parts.append(f"fail-rate {options.fail_rate:g}")
    return "; ".join(parts + faults_text(options))


def made(all_stats: list[dict[str, Any]]) -> str:
    return f"{total(all_stats, 'executions_created')} executions"


def env(options: SimOptions) -> dict[str, str]:
    return {"WORKFLOW_ID": options.workflow_ids[0]}
