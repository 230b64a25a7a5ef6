"""Wireflow's `wfbatch sim` knobs and description."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import click

from wfbatch.sim.cli import faults_text, latency_text, total
from wfbatch.sim.options import ErrorStyle, ProviderOptions, SimOptions
from wfbatch.sim.wireflow.plans import PLAN_LIMITS, WireflowPlan


@dataclass(frozen=True)
class WireflowOptions(ProviderOptions):
    plan: WireflowPlan = WireflowPlan.FREE
    """Whose rate limits apply (`rpm`, `epm`, `daily` override them one by one)."""
    error_style: ErrorStyle = "string"
    """`{"error": "msg"}` or the newer `{"error": {"type", "code", "message"}}` envelope."""
    estimate_incomplete: bool = False
    """`/estimate` answers estimateComplete false (a graph whose cost it cannot predict)."""
    workflow_ids: tuple[str, ...] = field(default=("wf_demo",))
    starts_per_workflow: bool = False
    """Each workflow its own execution-start window (`epm` each; the key's request window and daily
    cap stay shared), as the docs can be read; False: one start window for the key."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "plan", WireflowPlan(self.plan))
        if self.error_style not in ("string", "object"):
            raise ValueError("error_style must be 'string' or 'object'")


@dataclass(frozen=True)
class WindowLimits:
    """The plan's limits with the run's overrides: per window, and per simulated day (None = none)."""

    requests: int
    executions: int
    daily: int | None


def window_limits(options: SimOptions) -> WindowLimits:
    requests, executions, daily = PLAN_LIMITS[WireflowOptions.of(options).plan]
    return WindowLimits(
        options.rpm if options.rpm is not None else requests,
        options.epm if options.epm is not None else executions,
        options.daily if options.daily is not None else daily,
    )


def _workflow_ids(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    ids = tuple(w.strip() for w in value.split(",") if w.strip())
    if not ids:
        raise click.BadParameter("name at least one workflow, e.g. wf_a,wf_b")
    return ids


CLI_OPTIONS: tuple[click.Option, ...] = (
    click.Option(
        ["--plan"],
        type=click.Choice([p.value for p in WireflowPlan]),
        default=WireflowPlan.FREE.value,
        show_default=True,
        help="Wireflow plan whose rate limits to apply.",
    ),
    click.Option(
        ["--workflow-ids", "workflow_ids"],
        default="wf_demo",
        show_default=True,
        callback=_workflow_ids,
        help="Wireflow: the workflows the simulator knows, comma-separated.",
    ),
    click.Option(
        ["--starts-per-workflow"],
        is_flag=True,
        help="Wireflow: each workflow its own execution-start window (the key's request window shared).",
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
    limits = window_limits(options)
    daily = limits.daily
    credits = "unlimited" if options.credits is None else f"{options.credits:g}"
    parts = [
        f"plan {WireflowOptions.of(options).plan.value}: {limits.requests} req + "
        f"{limits.executions} executions per {options.window:g}s"
        f"{' per workflow' if WireflowOptions.of(options).starts_per_workflow else ''}, "
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
    """The plan and the window too: pasted without them, wfbatch paced a `--plan pro` simulator at
    the free plan's limits, and a `--window 5` one by 60-second windows."""
    found = {
        "WORKFLOW_ID": WireflowOptions.of(options).workflow_ids[0],
        "PLAN": WireflowOptions.of(options).plan.value,
    }
    if options.window != 60.0:
        found["RATE_WINDOW_SECONDS"] = f"{options.window:g}"
    return found
