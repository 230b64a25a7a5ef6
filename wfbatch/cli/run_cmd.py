"""`wfbatch run FILE...`: run prompt files to completion in this process, no daemon needed."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from wfbatch.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_STOPPED,
    budget_option,
    fail,
    home_option,
    print_json,
    prompt_files_argument,
    provider_option,
    settings_from_flags,
    usable_home,
)
from wfbatch.cli.run_progress import shown_progress, wants_progress
from wfbatch.core.hashing import cache_key
from wfbatch.core.models import JobSpec
from wfbatch.core.parsing import PromptFileError
from wfbatch.core.states import UNFINISHED_STATES, JobState
from wfbatch.engine.acceptance import CheckedPrompts, balance_warnings, check_prompts
from wfbatch.engine.ingest import Ingested, ingest
from wfbatch.engine.scheduler import Engine, StopReason
from wfbatch.home import HomeLock, HomeLocked, UnsafeLockFile
from wfbatch.outputs import CONTACT_SHEET_FILE_NAME, MANIFEST_FILE_NAME
from wfbatch.protocol import error_headline
from wfbatch.settings import Settings
from wfbatch.store import Store
from wfbatch.store.remote_batches import RemoteBatchStore

MAX_FAILURES_LISTED = 1000


def read_and_parse(
    paths: tuple[Path, ...], settings: Settings, *, budget: float | None = None,
    refused: str = "nothing was enqueued; fix these and run again:",
) -> list[CheckedPrompts]:
    """Read and check every file before anything is enqueued (the same checks as a dropped file):
    one bad file enqueues nothing at all. `budget` (from --budget) replaces the files' own."""
    files: list[CheckedPrompts] = []
    reports: list[str] = []
    for path in paths:
        try:
            raw = path.read_bytes()
        except OSError as error:
            reports.append(f"{path}: cannot read: {error.strerror or error}")
            continue
        try:
            files.append(check_prompts(raw, path.name, settings, budget=budget))
        except PromptFileError as error:
            reports.append(error.report())
    if reports:
        fail(refused + "\n" + "\n".join(reports))
    return files


@click.command("run")
@prompt_files_argument
@provider_option
@budget_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the outcome on stdout.")
@home_option
def run_command(
    files: tuple[Path, ...], provider: str | None, budget: float | None, as_json: bool, home: Path | None
) -> None:
    """Run FILES' batches to completion in this process, then exit.

    Exit codes: 0 all done; 1 some failed; 2 bad input or configuration (nothing enqueued);
    3 stopped with jobs still queued (e.g. out of credits), with the reason."""
    settings = settings_from_flags(home, provider=provider)
    prompt_files = read_and_parse(files, settings, budget=budget)
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
    store = await Store.open(layout.db)
    try:
        ingested: list[Ingested] = []
        for prompt_file in prompt_files:
            try:
                done = await ingest(
                    store,
                    layout,
                    prompt_file.parsed,
                    prompt_file.raw,
                    prompt_file.default_provider,
                    expanded=prompt_file.expanded,
                )
                if done.resumed and prompt_file.parsed.budget != done.batch.budget:
                    await store.set_batch_budget(done.batch.id, prompt_file.parsed.budget)
                    done = replace(done, batch=replace(done.batch, budget=prompt_file.parsed.budget))
                ingested.append(done)
            except PromptFileError as error:  # checked by read_and_parse; kept for safety
                fail(f"nothing more was enqueued:\n{error.report()}")
        batch_ids = [i.batch.id for i in ingested]
        engine = Engine(store, settings, layout, batch_ids=batch_ids)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, engine.request_stop)
        warnings = await _balance_warnings(engine, store, prompt_files)
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)
        shown = shown_progress(store, engine, batch_ids) if show_progress else contextlib.nullcontext()
        try:
            async with shown:
                reason = await engine.run_until_idle()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        summary = await _summary(store, engine, ingested, reason)
        summary["warnings"] = warnings
        return summary
    finally:
        await store.close()
        lock.release()


async def _balance_warnings(engine: Engine, store: Store, prompt_files: list[CheckedPrompts]) -> list[str]:
    """Warn (and go on) when what is left to generate is estimated above a provider's balance: the
    balances are asked for first (this is a run, not the accept path), then the shared rule."""
    jobs = [job for f in prompt_files for job in f.expanded]
    for name in sorted({job.spec.provider for job in jobs}):
        await engine.pool.refresh_balance(name)

    async def left_to_generate(specs: Sequence[JobSpec]) -> float:
        cached = await store.cached_keys([cache_key(spec) for spec in specs])
        return await engine.estimate_credits([spec for spec in specs if cache_key(spec) not in cached])

    return list(await balance_warnings(prompt_files, engine.pool.balances, left_to_generate))


async def _summary(
    store: Store, engine: Engine, ingested: list[Ingested], reason: StopReason
) -> dict[str, Any]:
    batch_ids = [i.batch.id for i in ingested]
    counts = await store.counts(batch_ids)
    failures: list[dict[str, Any]] = []
    for batch_id in batch_ids:
        for job in await store.list_jobs(
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
    left = sum(counts[state] for state in UNFINISHED_STATES)
    if left:
        exit_code = EXIT_STOPPED
    elif counts["failed"]:
        exit_code = EXIT_FAILED
    else:
        exit_code = EXIT_OK
    output_dirs = [i.batch.output_dir for i in ingested]
    return {
        "batch_ids": batch_ids,
        "resumed": [i.batch.id for i in ingested if i.resumed],
        "total": sum(counts.values()),
        "done": counts["done"],
        "failed": counts["failed"],
        "canceled": counts["canceled"],
        "queued": left,
        "cache_hits": await store.cache_hits(batch_ids),
        "credits": {
            "charged": sum([await engine.budget.ledger.charged(batch_id=b) for b in batch_ids]),
            "budgets": {i.batch.id: i.batch.budget for i in ingested if i.batch.budget is not None},
        },
        "provider_requests": engine.pool.requests_sent(),
        "output_dirs": output_dirs,
        "manifests": [str(Path(d) / MANIFEST_FILE_NAME) for d in output_dirs],
        "contact_sheets": [str(Path(d) / CONTACT_SHEET_FILE_NAME) for d in output_dirs],
        "remote_batches": [
            row.to_json() for row in await RemoteBatchStore(store).of_batches(batch_ids)
        ],
        "failures": failures,
        "stop_reason": {"code": reason.code, "message": reason.message, **_jsonable(reason.details)},
        "exit_code": exit_code,
    }


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
        echo(f"  images:        {output_dir}/pending-review/")
        echo(f"  manifest:      {manifest}")
        echo(f"  contact sheet: {sheet}")
    for remote in summary["remote_batches"]:
        counts = remote["request_counts"]
        echo(
            f"  remote batch:  {remote['remote_id'] or '(not created)'} {remote['status'] or remote['step']},"
            f" {counts['completed']} of {remote['lines']} done, {counts['failed']} failed"
        )
    for failure in summary["failures"][:20]:
        echo(
            f"  failed job {failure['job_id']} (line {failure['line']}):"
            f" {error_headline(failure['http_status'])}: {failure['message']}"
            f" [request id {failure['request_id'] or '-'}]"
        )
    if summary["exit_code"] == EXIT_STOPPED:
        echo(f"stopped with work left: {summary['stop_reason']['message']}", err=True)
