"""`wfbatch plan FILE...`: entries, dedup, cache hits, credits and duration before spending anything."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from wfbatch.cli.common import (
    budget_option,
    home_option,
    open_configured_store,
    print_json,
    prompt_files_argument,
    provider_option,
    settings_from_flags,
    usable_home,
)
from wfbatch.cli.run_cmd import read_and_parse
from wfbatch.core.models import ParsedBatch
from wfbatch.core.words import figure, plural
from wfbatch.engine.planning.plan import PipelinePlan, Plan, make_plan
from wfbatch.settings import Settings


@click.command("plan")
@prompt_files_argument
@provider_option
@budget_option
@click.option(
    "--approve-rate",
    type=click.FloatRange(0, 1),
    default=None,
    help="Share of drafts you expect to approve, for draft → final batches (default: this HOME's"
    " history of reviewed drafts, else [drafts] default_approve_rate).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the forecast as one JSON object.")
@home_option
def plan_command(
    files: tuple[Path, ...],
    provider: str | None,
    budget: float | None,
    approve_rate: float | None,
    as_json: bool,
    home: Path | None,
) -> None:
    """Forecast FILES without sending a paid request: unique jobs, cache hits, estimated credits
    (and how many jobs have an unknown cost), estimated duration under the configured limits, and
    whether a budget, a daily cap or the balance would stop the run, and where."""
    settings = settings_from_flags(home, provider=provider)
    prompt_files = read_and_parse(files, settings, budget=budget, refused="fix these and plan again:")
    parsed = [f.parsed for f in prompt_files]
    plan = asyncio.run(_plan(settings, parsed, approve_rate))
    if as_json:
        print_json(plan.to_json())
        return
    _print_plan(plan)


async def _plan(settings: Settings, parsed: list[ParsedBatch], approve_rate: float | None) -> Plan:
    layout = usable_home(settings)
    store = await open_configured_store(settings, layout)
    try:
        return await make_plan(store, settings, parsed, approve_rate=approve_rate)
    finally:
        await store.close()


def _print_plan(plan: Plan) -> None:
    echo = click.echo
    echo(
        f"{plural(plan.entries, 'entry')} → {plural(plan.jobs, 'job')}, {plan.unique_jobs} unique;"
        f" {plan.cache_hits} from the cache, {plan.jobs_left} to generate"
    )
    unknown = f" ({plural(plan.unknown_cost_jobs, 'job')} of unknown cost)" if plan.unknown_cost_jobs else ""
    total = _cost(plan.estimated_credits, plan.likely_credits, plan.unit, why=_why(plan))
    echo(f"estimated cost: {total}{unknown}")
    echo(f"estimated duration: {_plan_duration(plan)}")
    for name, provider in plan.providers.items():
        cost = _cost(
            provider.cost_per_image, provider.likely_cost_per_image, provider.unit, why=provider.likely_why,
            each=" each",
        )
        balance = "" if provider.balance is None else f", balance {figure(provider.balance)}"
        echo(
            f"  {name}: {plural(provider.jobs_left, 'job')}, {cost},"
            f" latency {provider.latency:.1f} s ({provider.latency_source}){balance}"
        )
        if provider.shared_with:
            echo(
                f"    shared with {plural(provider.shared_with, 'batch')} queued on it:"
                f" {provider.share:.0%} of its starts (priority and weight), counted in the duration"
            )
        if provider.batch_jobs:
            batch_jobs = plural(provider.batch_jobs, "job")
            echo(f"    batch mode: {batch_jobs}, done within {provider.completion_window}")
            if provider.batch_cost is not None and provider.batch_direct_cost is not None:
                saving = provider.batch_direct_cost - provider.batch_cost
                echo(
                    f"    price: {figure(provider.batch_cost)} {provider.unit} in batch mode,"
                    f" {figure(provider.batch_direct_cost)} direct (saving {figure(saving)})"
                )
    if plan.pipeline:
        _print_pipeline(plan.pipeline, plan.unit)
    if plan.stops_at:
        echo(f"would stop after {plural(plan.stops_at['after_jobs'], 'job')}: {plan.stops_at['reason']}")


def _print_pipeline(pipeline: PipelinePlan, unit: str | None) -> None:
    """`unit`: the run's cost unit, as the estimate above says it (USD for Replicate: the figures
    read "0.26 credits" under "estimated cost: 0.26 USD"); "credits" when providers differ."""
    echo = click.echo
    unit = unit if unit not in (None, "free") else "credits"
    rate = f"{pipeline.approve_rate:.0%}"
    echo(
        f"drafts → finals: {plural(pipeline.drafts, 'draft')}, ~{figure(pipeline.expected_finals)} finals"
        f" at an approval rate of {rate} ({pipeline.approve_rate_source})"
    )
    if pipeline.pipeline_credits is None or pipeline.straight_to_finals is None:
        echo("  credits unknown: a draft or final model has no known price (set `costs`)")
        return
    echo(
        f"  drafts {figure(pipeline.drafts_credits)} + finals {figure(pipeline.finals_credits)}"
        f" = {figure(pipeline.pipeline_credits)} {unit}"
    )
    saving = pipeline.saving or 0.0
    share = f" ({saving / pipeline.straight_to_finals:.0%})" if pipeline.straight_to_finals else ""
    straight = f"  straight to finals: {figure(pipeline.straight_to_finals)} {unit}; "
    if saving >= 0:
        echo(f"{straight}saving {figure(saving)}{share}")
    else:
        # A flat-price provider charges a draft like a final: drafting first only adds the drafts.
        echo(f"{straight}drafting first costs {figure(-saving)} more{share.replace('-', '')}: this"
             " provider charges a draft about as much as a final")


def _why(plan: Plan) -> str | None:
    whys = sorted({p.likely_why for p in plan.providers.values() if p.likely_why})
    return "; ".join(whys) or None


def _cost(
    reserve: float | None, likely: tuple[float, float] | None, unit: str | None, *, why: str | None,
    each: str = "",
) -> str:
    """`0.042 USD`, `0.042–0.167 USD (quality auto: the server picks; budgets reserve 0.167)`, `free`;
    `unit` None: providers of different units, each priced on its own line below."""
    if unit == "free":
        return "free"
    if reserve is None:
        return "unknown"
    if likely is None or likely[0] >= likely[1]:
        if unit is None:
            return f"{figure(reserve)} (in each provider's unit, below)"
        return f"{figure(reserve)} {unit}{each}"
    span = f"{figure(likely[0])}–{figure(likely[1])}{' ' + unit if unit else ''}{each}"
    return f"{span} ({why + '; ' if why else ''}budgets reserve {figure(reserve)})"


def _plan_duration(plan: Plan) -> str:
    """Minutes for the direct jobs; a batch API's window (not "0m00s") for the jobs sent in batch mode."""
    batch = [p.completion_window for p in plan.providers.values() if p.batch_jobs and p.completion_window]
    if not batch:
        return _duration(plan.estimated_seconds)
    window = f"within {batch[0]} (batch mode)"
    if all(p.batch_jobs == p.jobs_left for p in plan.providers.values()):
        return window
    return f"{_duration(plan.estimated_seconds)} for the direct jobs; the batch-mode jobs {window}"


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "never (a limit is zero)"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
