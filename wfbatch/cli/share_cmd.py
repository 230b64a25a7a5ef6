"""`wfbatch priority BATCH N` and `wfbatch weight BATCH W`: how a batch shares its provider with the
other batches (see engine/loop/fairshare.py). Both take effect at the next dispatch round."""

from __future__ import annotations

import math
from pathlib import Path

import click

from wfbatch.cli.common import fail, print_json
from wfbatch.cli.remote_common import call_daemon, remote_options
from wfbatch.protocol import CommandResult
from wfbatch.protocol.models import MAX_BATCH_PRIORITY, MAX_BATCH_WEIGHT


def _report(result: CommandResult, as_json: bool) -> None:
    if as_json:
        print_json(result.model_dump(mode="json"))
    else:
        click.echo(result.message)


@click.command("priority", context_settings={"ignore_unknown_options": True})  # `-3` reaches N
@click.argument("batch_id")
@click.argument("priority", type=click.IntRange(-MAX_BATCH_PRIORITY, MAX_BATCH_PRIORITY))
@remote_options
def priority_command(
    batch_id: str, priority: int, home: Path | None, socket_path: Path | None, as_json: bool
) -> None:
    """Set BATCH's priority to N (default 0): batches of a higher priority start their jobs first;
    batches of the same priority share the provider by weight."""
    _report(call_daemon(home, socket_path, lambda client: client.set_priority(batch_id, priority)), as_json)


@click.command("weight", context_settings={"ignore_unknown_options": True})
@click.argument("batch_id")
@click.argument("weight")
@remote_options
def weight_command(
    batch_id: str, weight: str, home: Path | None, socket_path: Path | None, as_json: bool
) -> None:
    """Set BATCH's weight to W (default 1): its share of the provider among runnable batches of the
    same priority (weight 2 beside weight 1: two starts in three)."""
    try:
        value = float(weight)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= MAX_BATCH_WEIGHT):
        fail(f"W is a number more than 0 and at most {MAX_BATCH_WEIGHT:g}; not {weight[:40]!r}")
    _report(call_daemon(home, socket_path, lambda client: client.set_weight(batch_id, value)), as_json)
