"""`wfbatch costs`: images made, cache hits and spend from this HOME's ledger, grouped.

It reads the database directly (like `plan`), so it answers with or without a daemon running."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import sys
from pathlib import Path

import click

from wfbatch.cli.common import fail, home_option, open_configured_store, print_json, settings_from_flags
from wfbatch.core.words import figure, plural
from wfbatch.engine.planning.costs import GROUPINGS, CostGroup, CostReport, GroupBy, cost_report
from wfbatch.home import HomeLayout
from wfbatch.settings import Settings

CSV_COLUMNS = (
    "group",
    "name",
    "provider",
    "unit",
    "images",
    "cache_hits",
    "saved",
    "spent",
    "refunds",
    "possible_duplicates",
    "possible_duplicate_spend",
)


def _iso_date(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2026-12-07") from None


@click.command("costs")
@click.option("--since", callback=_iso_date, metavar="DATE", help="First day counted (YYYY-MM-DD, local).")
@click.option("--until", callback=_iso_date, metavar="DATE", help="Last day counted (YYYY-MM-DD, local).")
@click.option(
    "--by", "by", type=click.Choice(GROUPINGS), default="batch", show_default=True, help="How to group."
)
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (a header row; opens in a spreadsheet).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@home_option
def costs_command(
    since: str | None, until: str | None, by: GroupBy, as_csv: bool, as_json: bool, home: Path | None
) -> None:
    """What was made and spent, from this HOME's ledger: per group, images made, cache hits and what
    they saved (at the average price those images were charged, else the configured `costs`), spend
    in each provider's own unit (credits and USD are never added together), refunds, and images that
    may have been charged twice, listed apart. Days are local; --since and --until are included."""
    if as_csv and as_json:
        fail("choose one of --csv and --json")
    if since and until and since > until:
        fail(f"--since {since} is after --until {until}")
    settings = settings_from_flags(home)
    report = asyncio.run(_report(settings, by, since, until))
    if as_json:
        print_json(report.to_json())
    elif as_csv:
        _print_csv(report)
    else:
        _print_text(report)


async def _report(settings: Settings, by: GroupBy, since: str | None, until: str | None) -> CostReport:
    layout = HomeLayout(settings.home)
    if settings.store.url() is None and not layout.db.exists():
        return CostReport(by, since, until)  # nothing was ever run here; do not create a HOME to say so
    store = await open_configured_store(settings, layout)
    try:
        return await cost_report(store, settings, by, since, until)
    finally:
        await store.close()


def _print_csv(report: CostReport) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    # By provider the group is the provider: one column of it, not two with one header.
    columns = [c for c in CSV_COLUMNS if not (report.by == "provider" and c in ("group", "name"))]
    writer.writerow((report.by if c == "group" else c) for c in columns)
    for group in report.groups:
        row = group.to_json()
        writer.writerow(_csv_cell(row[c]) for c in columns)


def _csv_cell(value: object) -> object:
    # A spreadsheet reads a plain number; an unknown amount is an empty cell, not the word "None".
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else value


def _print_text(report: CostReport) -> None:
    echo = click.echo
    window = f" from {report.since or 'the start'} to {report.until or 'today'}"
    if not report.groups:
        echo(f"nothing made or spent{window}")
        return
    echo(f"by {report.by}{window}:")
    for group in report.groups:
        echo(f"  {_headline(group)}")
    echo("total per provider (each in its own unit):")
    for total in report.totals:
        echo(f"  {_headline(total)}")
    if report.possible_duplicates:
        echo("possibly charged twice (a start re-sent to a provider that cannot tell):")
        for d in report.possible_duplicates:
            where = f"{d.provider}, batch {d.batch_id}"
            echo(f"  {d.day} job {d.job_uid} ({where}): {figure(d.credits)}: {d.why}")


def _headline(group: CostGroup) -> str:
    name = f" {group.name}" if group.name else ""
    if group.unit == "free":  # a provider that charges nothing: no "spent 0 free"
        hits = plural(group.cache_hits, 'cache hit')
        return f"{group.group}{name} [{group.provider}]: {plural(group.images, 'image')}, {hits}, free"
    saved = f", saved {figure(group.saved)} {group.unit}" if group.cache_hits else ""
    refunds = f", refunds {figure(group.refunds)}" if group.refunds else ""
    duplicates = (
        f", {plural(group.possible_duplicates, 'possible duplicate charge')}"
        f" ({figure(group.possible_duplicate_spend)})"
        if group.possible_duplicates
        else ""
    )
    return (
        f"{group.group}{name} [{group.provider}]: {plural(group.images, 'image')},"
        f" {plural(group.cache_hits, 'cache hit')}{saved}, spent {figure(group.spent)} {group.unit}"
        f"{refunds}{duplicates}"
    )
