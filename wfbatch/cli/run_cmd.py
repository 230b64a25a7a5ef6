"""`wfbatch run FILE...`: run prompt files to completion in this process, no daemon needed."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import click

from wfbatch.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_STOPPED,
    at_option,
    budget_option,
    fail,
    home_option,
    open_configured_store,
    print_json,
    prompt_files_argument,
    provider_option,
    settings_from_flags,
    usable_home,
)
from wfbatch.cli.run_progress import shown_progress, uploads_by_state, wants_progress
from wfbatch.core.parsing import PromptFileError
from wfbatch.core.words import plural
from wfbatch.engine.intake.acceptance import CheckedPrompts, check_prompts
from wfbatch.engine.intake.control import Accepted, Control, Resumed
from wfbatch.engine.loop.pool import SUMMARIZED
from wfbatch.engine.loop.scheduler import Engine, StopReason
from wfbatch.home import HomeLock, HomeLocked, UnsafeLockFile
from wfbatch.outputs import CONTACT_SHEET_FILE_NAME, MANIFEST_FILE_NAME
from wfbatch.protocol import JobState, error_headline
from wfbatch.protocol.states import OPEN
from wfbatch.settings import Settings
from wfbatch.store import Reuse, StoreApi

MAX_FAILURES_LISTED = 1000


def read_and_parse(
    paths: tuple[Path, ...], settings: Settings, *, budget: float | None = None,
    not_before: float | None = None, refused: str = "nothing was enqueued; fix these and run again:",
) -> list[CheckedPrompts]:
    """Read and check every file before anything is enqueued (`check_prompts`: the checks
    `Control.accept` makes of a dropped file): one bad file enqueues nothing at all. `budget` (from
    --budget) and `not_before` (from --at) replace the files' own."""
    files: list[CheckedPrompts] = []
    reports: list[str] = []
    for path in paths:
        try:
            raw = path.read_bytes()
        except OSError as error:
            reports.append(f"{path}: cannot read: {error.strerror or error}")
            continue
        try:
            folder = path.absolute().parent  # where the file's own input pictures may be
            files.append(
                check_prompts(
                    raw, path.name, settings, budget=budget, not_before=not_before, prompt_dir=folder
                )
            )
        except PromptFileError as error:
            reports.append(error.report())
    if reports:
        fail(refused + "\n" + "\n".join(reports))
    return files


@click.command("run")
@prompt_files_argument
@provider_option
@budget_option
@at_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the outcome on stdout.")
@home_option
def run_command(
    files: tuple[Path, ...], provider: str | None, budget: float | None, at: dt.datetime | None,
    as_json: bool, home: Path | None,
) -> None:
    """Run FILES' batches to completion in this process, then exit.

    Exit codes: 0 all done; 1 some failed; 2 bad input or configuration (nothing enqueued);
    3 stopped with jobs still queued (e.g. out of credits), with the reason."""
    settings = settings_from_flags(home, provider=provider)
    not_before = at.timestamp() if at is not None else None
    prompt_files = read_and_parse(files, settings, budget=budget, not_before=not_before)
    summary = asyncio.run(_run(settings, prompt_files, show_progress=wants_progress()))
    if as_json:
        print_json(summary)
    else:
        _print_summary(summary)
    sys.exit(summary["exit_code"])


async def _run(
    settings: Settings, prompt_files: list[CheckedPrompts], *, show_progress: bool
) -> dict[str, Any]:
    layout = usable_home(settings)
    lock = HomeLock(layout)
    try:
        lock.acquire("wfbatch run")
    except HomeLocked as error:
        fail(f"{error}. Hand the files to it with `wfbatch submit FILE...`, or stop it first.")
    except UnsafeLockFile as error:
        fail(str(error))
    store = await open_configured_store(settings, layout)
    quiet = _SummarizedOut()
    handlers = [] if _verbose() else list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        # An engine for this run's batches only: each joins it as the shared way in takes it.
        engine = Engine(store, settings, layout, batch_ids=[])
        control = Control(engine)
        outcomes = [await control.enqueue(f, reuse=Reuse.UNFINISHED) for f in prompt_files]
        batch_ids = [outcome.batch.id for outcome in outcomes if outcome.batch is not None]
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, engine.request_stop)
        for outcome in outcomes:
            if isinstance(outcome, Resumed):
                batch = outcome.batch
                counts = await store.counters.counts([batch.id])
                left = sum(counts[state] for state in OPEN)
                click.echo(f"resumed batch {batch.id} ({batch.name}): {plural(left, 'job')} left", err=True)
        warnings = await _balance_warnings(engine, control, prompt_files)
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)
        shown = shown_progress(store, engine, batch_ids) if show_progress else contextlib.nullcontext()
        try:
            async with shown:
                reason = await engine.run_until_idle()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        summary = await _summary(store, engine, outcomes, reason)
        summary["warnings"] = warnings
        return summary
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)
        await store.close()
        lock.release()


class _SummarizedOut(logging.Filter):
    """Leaves out of stderr what the summary says anyway (a bad key's pause was printed twice)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, SUMMARIZED, False)


def _verbose() -> bool:
    context = click.get_current_context(silent=True)
    return bool(context is not None and context.find_root().params.get("verbose"))


async def _balance_warnings(
    engine: Engine, control: Control, prompt_files: list[CheckedPrompts]
) -> list[str]:
    """Warn (and go on) when what is left to generate is estimated above a provider's balance: a
    run has the time to ask for the balances first, then the daemon's rule applies to all its files."""
    for name in sorted({job.spec.provider for f in prompt_files for job in f.expanded}):
        await engine.pool.refresh_balance(name)
    return list(await control.balance_warnings(prompt_files))


async def _summary(
    store: StoreApi, engine: Engine, outcomes: list[Accepted | Resumed], reason: StopReason
) -> dict[str, Any]:
    batches = [outcome.batch for outcome in outcomes if outcome.batch is not None]
    batch_ids = [batch.id for batch in batches]
    counts = await store.counters.counts(batch_ids)
    failures: list[dict[str, Any]] = []
    for batch_id in batch_ids:
        for job in await store.jobs.list_jobs(
            states=[JobState.FAILED], batch_id=batch_id, limit=MAX_FAILURES_LISTED - len(failures)
        ):
            failures.append(
                {
                    "job_id": job.id,
                    "batch_id": job.batch_id,
                    "line": job.line,
                    "prompt": job.spec.prompt,
                    "state": job.state.value,
                    "http_status": job.error_status,
                    "message": job.error_message,
                    "request_id": job.error_request_id,
                }
            )
    left = sum(counts[state] for state in OPEN)
    uploads = await _uploads_left(store, batch_ids)
    stop_reason = {"code": reason.code, "message": reason.message, **_jsonable(reason.details)}
    if left:
        exit_code = EXIT_STOPPED
    elif uploads["pending"] or uploads["held"]:
        # Every image is made, but not where the HOME says they go: work is left, and said.
        exit_code = EXIT_STOPPED
        stop_reason = {"code": "uploads_left", "message": uploads_message(uploads), **uploads}
    elif counts[JobState.FAILED]:
        exit_code = EXIT_FAILED
    else:
        exit_code = EXIT_OK
    output_dirs = [batch.output_dir for batch in batches]
    return {
        "batch_ids": batch_ids,
        "resumed": [outcome.batch.id for outcome in outcomes if isinstance(outcome, Resumed)],
        "total": sum(counts.values()),
        "done": counts[JobState.DONE],
        "failed": counts[JobState.FAILED],
        "canceled": counts[JobState.CANCELED],
        "queued": left,
        "cache_hits": await store.counters.cache_hits(batch_ids),
        "credits": {
            "charged": sum([await engine.budget.ledger.charged(batch_id=b) for b in batch_ids]),
            "budgets": {batch.id: batch.budget for batch in batches if batch.budget is not None},
        },
        "provider_requests": engine.pool.requests_sent(),
        "output_dirs": output_dirs,
        "manifests": [str(Path(d) / MANIFEST_FILE_NAME) for d in output_dirs],
        "contact_sheets": [str(Path(d) / CONTACT_SHEET_FILE_NAME) for d in output_dirs],
        "remote_batches": [
            row.to_json() for row in await store.remote_batches.of_batches(batch_ids)
        ],
        "failures": failures,
        "uploads": uploads,
        "stop_reason": stop_reason,
        "exit_code": exit_code,
    }


async def _uploads_left(store: StoreApi, batch_ids: list[str]) -> dict[str, Any]:
    """This run's uploads to the delivery bucket by state, and why the held ones are held."""
    totals = await uploads_by_state(store, batch_ids)
    reasons = await store.outbox.held_reasons() if totals["held"] else []
    return {**totals, "held_reasons": reasons}


def uploads_message(uploads: dict[str, Any]) -> str:
    """`3 uploads held (no credentials: ...), 4 still pending: they go at the next start ...`."""
    parts = []
    if uploads["held"]:
        why = f" ({'; '.join(uploads['held_reasons'])})" if uploads["held_reasons"] else ""
        parts.append(f"{plural(uploads['held'], 'upload')} held{why}")
    if uploads["pending"]:
        parts.append(f"{plural(uploads['pending'], 'upload')} still pending")
    return (
        ", ".join(parts) + ": every image is made and kept; the uploads go at the next start"
        " (`wfbatch daemon`, or `wfbatch run` again)"
    )


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in details.items() if k != "counts"}


def _print_summary(summary: dict[str, Any]) -> None:
    echo = click.echo
    echo(
        f"{summary['done']} done, {summary['failed']} failed, {summary['queued']} left"
        f" of {summary['total']} ({summary['cache_hits']} from cache,"
        f" {summary['provider_requests']} provider requests)"
    )
    for output_dir, manifest, sheet in zip(
        summary["output_dirs"], summary["manifests"], summary["contact_sheets"], strict=True
    ):
        # Only what exists: a run that made nothing (every job failed, or held) has no images.
        if Path(output_dir, "pending-review").is_dir():
            echo(f"  images:        {output_dir}/pending-review/")
        if Path(manifest).is_file():
            echo(f"  manifest:      {manifest}")
        if Path(sheet).is_file():
            echo(f"  contact sheet: {sheet}")
    for remote in summary["remote_batches"]:
        counts = remote["request_counts"]
        echo(
            f"  remote batch:  {remote['remote_id'] or '(not created)'} {remote['status'] or remote['step']},"
            f" {counts['completed']} of {remote['lines']} done, {counts['failed']} failed"
        )
    uploads = summary["uploads"]
    if uploads["pending"] or uploads["held"] or uploads["done"]:
        done, pending, held = uploads["done"], uploads["pending"], uploads["held"]
        echo(f"  uploads:       {done} uploaded, {pending} pending, {held} held")
    for failure in summary["failures"][:20]:
        echo(
            f"  failed job {failure['job_id']} (line {failure['line']}):"
            f" {error_headline(failure['http_status'])}: {failure['message']}"
            f" [request id {failure['request_id'] or '-'}]"
        )
    if summary["exit_code"] == EXIT_STOPPED:
        echo(f"stopped with work left: {summary['stop_reason']['message']}", err=True)
