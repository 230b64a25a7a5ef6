"""Commands to the daemon: `wfbatch retry`, `cancel`, `edit`, `pause`, `resume`, `review`."""

from __future__ import annotations

from pathlib import Path

import click

from wfbatch.cli.common import JOB_ID, fail, parse_credits, print_json
from wfbatch.cli.remote_common import call_daemon, remote_options
from wfbatch.protocol import CancelRequest, CommandResult, PauseRequest, RetryRequest, ReviewRequest


def _report(result: CommandResult, as_json: bool) -> None:
    if as_json:
        print_json(result.model_dump(mode="json"))
    else:
        click.echo(result.message)


@click.command("retry")
@click.argument("job_ids", nargs=-1, type=JOB_ID)
@click.option("--failed", "all_failed", is_flag=True, help="Every failed job (of --batch, if given).")
@click.option("--batch", "batch_id", default=None, help="With --failed: only this batch's failed jobs.")
@remote_options
def retry_command(
    job_ids: tuple[int, ...],
    all_failed: bool,
    batch_id: str | None,
    home: Path | None,
    socket_path: Path | None,
    as_json: bool,
) -> None:
    """Queue failed or canceled jobs again, attempts reset: JOB... or --failed [--batch B]."""
    if job_ids and (all_failed or batch_id):
        fail("give job ids, or --failed [--batch B], not both")
    if not job_ids and not (all_failed or batch_id):
        fail("say which jobs: JOB... or --failed [--batch B]")
    if job_ids:
        request = RetryRequest(job_ids=list(job_ids))
    elif batch_id:
        request = RetryRequest(failed_of_batch=batch_id)
    else:
        request = RetryRequest(all_failed=True)
    _report(call_daemon(home, socket_path, lambda client: client.retry(request)), as_json)


@click.command("cancel")
@click.argument("job_ids", nargs=-1, type=JOB_ID)
@click.option("--batch", "batch_id", default=None, help="Every unfinished job of this batch.")
@remote_options
def cancel_command(
    job_ids: tuple[int, ...], batch_id: str | None, home: Path | None, socket_path: Path | None, as_json: bool
) -> None:
    """Cancel jobs not finished yet (JOB... or --batch B); jobs in flight are stopped."""
    if bool(job_ids) == bool(batch_id):
        fail("say which jobs: JOB... or --batch B")
    request = CancelRequest(job_ids=list(job_ids), batch_id=batch_id)
    _report(call_daemon(home, socket_path, lambda client: client.cancel(request)), as_json)


@click.command("edit")
@click.argument("job_id", type=JOB_ID)
@click.option("--prompt", required=True, help="The new prompt.")
@remote_options
def edit_command(
    job_id: int, prompt: str, home: Path | None, socket_path: Path | None, as_json: bool
) -> None:
    """Give a failed or canceled job a new prompt and queue it again."""
    _report(call_daemon(home, socket_path, lambda client: client.edit(job_id, prompt)), as_json)


def _scope(batch_id: str | None, provider: str | None) -> PauseRequest:
    if batch_id and provider:
        fail("give --batch or --provider, not both")
    if batch_id:
        return PauseRequest(scope="batch", id=batch_id)
    if provider:
        return PauseRequest(scope="provider", id=provider)
    return PauseRequest(scope="global")


@click.command("pause")
@click.option("--batch", "batch_id", default=None, help="Pause only this batch.")
@click.option("--provider", default=None, help="Pause only this provider.")
@click.option("--reason", default=None, help="Shown in status while paused.")
@remote_options
def pause_command(
    batch_id: str | None,
    provider: str | None,
    reason: str | None,
    home: Path | None,
    socket_path: Path | None,
    as_json: bool,
) -> None:
    """Start nothing new (everything, one batch, or one provider); jobs in flight finish.
    Pauses survive a daemon restart."""
    request = _scope(batch_id, provider).model_copy(update={"reason": reason})
    _report(call_daemon(home, socket_path, lambda client: client.pause(request)), as_json)


@click.command("resume")
@click.option("--batch", "batch_id", default=None, help="Resume only this batch.")
@click.option("--provider", default=None, help="Resume this provider (also after running out of credits).")
@remote_options
def resume_command(
    batch_id: str | None, provider: str | None, home: Path | None, socket_path: Path | None, as_json: bool
) -> None:
    """Undo `wfbatch pause` (same options)."""
    request = _scope(batch_id, provider)
    _report(call_daemon(home, socket_path, lambda client: client.resume(request)), as_json)


@click.command("review")
@click.argument("job_ids", nargs=-1, type=JOB_ID, required=True)
@click.option("--approve", is_flag=True, help="Move the images to approved/.")
@click.option("--reject", is_flag=True, help="Move the images to rejected/.")
@click.option("--pending", is_flag=True, help="Back to pending-review/.")
@remote_options
def review_command(
    job_ids: tuple[int, ...],
    approve: bool,
    reject: bool,
    pending: bool,
    home: Path | None,
    socket_path: Path | None,
    as_json: bool,
) -> None:
    """Approve or reject the images of JOB...: the files move between the batch's review folders."""
    # Separate flags, not one flag_value: with those, `--approve --reject` silently meant the last.
    flags = {"approve": approve, "reject": reject, "pending": pending}
    chosen = [name for name, given in flags.items() if given]
    if len(chosen) != 1:
        both = f", not {' and '.join(chosen)}" if chosen else ""
        fail(f"say one of --approve, --reject or --pending{both}")
    request = ReviewRequest(job_ids=list(job_ids), decision=chosen[0])  # type: ignore[arg-type]
    _report(call_daemon(home, socket_path, lambda client: client.review(request)), as_json)


@click.command("budget", context_settings={"ignore_unknown_options": True})  # `-3` reaches CREDITS
@click.argument("batch_id")
@click.argument("credits")
@remote_options
def budget_command(
    batch_id: str, credits: str, home: Path | None, socket_path: Path | None, as_json: bool
) -> None:
    """Set BATCH's credit budget to CREDITS (or `none`); a batch held back by its budget tries again."""
    budget = parse_credits(credits)
    _report(call_daemon(home, socket_path, lambda client: client.set_budget(batch_id, budget)), as_json)
