"""`wfbatch submit FILE...`: hand prompt files to the running daemon."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import click

from wfbatch.cli.common import EXIT_BAD_INPUT, at_option, budget_option, fail, print_json
from wfbatch.cli.remote_common import call_daemon, remote_options
from wfbatch.client import DaemonClient
from wfbatch.core.parsing import PromptFileError, parse_prompt_bytes
from wfbatch.core.words import plural
from wfbatch.protocol import SubmitRequest, SubmitResult


def _requests(
    files: tuple[Path, ...], provider: str | None, budget: float | None, at: dt.datetime | None = None
) -> list[tuple[Path, SubmitRequest]]:
    requests: list[tuple[Path, SubmitRequest]] = []
    problems: list[str] = []
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError as error:
            problems.append(f"{path}: cannot read: {error.strerror or error}")
            continue
        try:
            content = raw.decode("utf-8")
        except UnicodeDecodeError:
            # The daemon takes text; the parser says exactly where the bytes go wrong.
            try:
                parse_prompt_bytes(raw, path.name)
            except PromptFileError as error:
                problems.append(error.report().rstrip())
                continue
            problems.append(f"{path}: not UTF-8 text")
            continue
        folder = str(path.absolute().parent)  # where the file's own input pictures may be
        request = SubmitRequest(
            name=path.name, content=content, provider=provider, budget=budget, not_before=at, folder=folder
        )
        requests.append((path, request))
    if problems:
        fail("nothing was submitted; fix these first:\n" + "\n".join(problems))
    return requests


async def _submit_all(client: DaemonClient, requests: list[tuple[Path, SubmitRequest]]) -> list[SubmitResult]:
    """Validate every file first (dry run): one bad file submits nothing, as with `wfbatch run`."""
    checks = [await client.submit(r.model_copy(update={"dry_run": True})) for _, r in requests]
    if any(check.errors for check in checks):
        return checks
    return [await client.submit(r) for _, r in requests]


@click.command("submit")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--provider", default=None, help="Provider for entries that name none (default: config).")
@budget_option
@at_option
@remote_options
def submit_command(
    files: tuple[Path, ...], provider: str | None, budget: float | None, at: dt.datetime | None,
    home: Path | None, socket_path: Path | None, as_json: bool,
) -> None:
    """Enqueue FILES as batches in the running daemon, validated as dropped files are.

    Exit codes: 0 submitted (duplicates of earlier batches are skipped and said so);
    2 a file was refused (nothing submitted) or no daemon answers."""
    requests = _requests(files, provider, budget, at)
    results: list[SubmitResult] = call_daemon(home, socket_path, lambda client: _submit_all(client, requests))
    refused = any(result.errors for result in results)
    if as_json:
        rows: list[dict[str, Any]] = [
            {"file": str(path), **result.model_dump(mode="json")}
            for (path, _), result in zip(requests, results, strict=True)
        ]
        print_json(rows)
    else:
        for (path, _), result in zip(requests, results, strict=True):
            if result.errors:
                click.echo(f"{path}: refused", err=True)
                click.echo((result.report or "").rstrip(), err=True)
            elif refused:
                click.echo(f"{path}: valid (not submitted, another file was refused)", err=True)
            elif result.duplicate_of:
                click.echo(f"{path}: same content as batch {result.duplicate_of}: skipped")
            else:
                click.echo(f"{path}: batch {result.batch_id}, {plural(result.jobs, 'job')} queued")
        for result in results:
            for warning in result.warnings:
                click.echo(f"warning: {warning}", err=True)
    if refused:
        sys.exit(EXIT_BAD_INPUT)
