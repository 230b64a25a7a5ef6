"""Read the daemon's state: `wfbatch status`, `jobs`, `show`."""

from __future__ import annotations

from pathlib import Path

import click

from wfbatch.cli.common import JOB_ID, print_json
from wfbatch.cli.remote_common import call_daemon, remote_options, wide_option
from wfbatch.cli.remote_render import render_job, render_jobs, render_status
from wfbatch.client import DaemonClient
from wfbatch.protocol import MAX_PAGE, JobDetail, JobSummary, Page, ReviewStatus, Status
from wfbatch.protocol.states import ORDER


@click.command("status")
@wide_option
@remote_options
def status_command(
    wide: bool, output: str | None, home: Path | None, socket_path: Path | None, as_json: bool
) -> None:
    """Jobs by state, each provider's limits and pauses, recent batches with their ETA."""
    status: Status = call_daemon(home, socket_path, lambda client: client.status())
    if as_json:
        print_json(status.model_dump(mode="json"))
    else:
        render_status(status, wide=wide or output == "wide")


def _states(values: tuple[str, ...]) -> list[str]:
    return [s.strip() for value in values for s in value.split(",") if s.strip()]


@click.command("jobs")
@click.option(
    "--state", "states", multiple=True,
    help=f"Only jobs in this state (repeat, or a,b): {', '.join(ORDER)}.",
)
@click.option("--batch", "batch_id", default=None, help="Only jobs of this batch (id, prefix or name).")
@click.option("--text", default=None, help="Only jobs whose prompt contains this text.")
@click.option(
    "--review", type=click.Choice([r.value for r in ReviewStatus]), default=None,
    help="Only jobs with this review status (pending: not approved or rejected yet; with --state"
    " done, the images waiting for `wfbatch review`).",
)
@click.option("--limit", type=click.IntRange(1, MAX_PAGE), default=50, show_default=True)
@click.option("--cursor", default=None, help="Continue after this cursor (printed when there are more).")
@wide_option
@remote_options
def jobs_command(
    states: tuple[str, ...],
    batch_id: str | None,
    text: str | None,
    review: str | None,
    limit: int,
    cursor: str | None,
    wide: bool,
    output: str | None,
    home: Path | None,
    socket_path: Path | None,
    as_json: bool,
) -> None:
    """One page of jobs, oldest first. With --json: a JSON list of jobs; the next page's cursor
    goes to stderr."""
    async def fetch(client: DaemonClient) -> tuple[Page[JobSummary], list[str]]:
        page = await client.jobs(
            states=_states(states), batch_id=batch_id, text=text, review=review, cursor=cursor, limit=limit
        )
        # The shortened batch ids must be unique among all recent batches, not only this page's.
        known = [] if as_json else [b.id for b in (await client.status()).batches]
        return page, known

    page, known = call_daemon(home, socket_path, fetch)
    if as_json:
        print_json([job.model_dump(mode="json") for job in page.items])
    else:
        render_jobs(page.items, wide=wide or output == "wide", known_batches=known)
    if page.next_cursor is not None:
        click.echo(f"more: --cursor {page.next_cursor}", err=True)


@click.command("show")
@click.argument("job_id", type=JOB_ID)
@wide_option
@remote_options
def show_command(
    job_id: int, wide: bool, output: str | None, home: Path | None, socket_path: Path | None, as_json: bool
) -> None:
    """One job in full, with every attempt (status, message, request id)."""
    job: JobDetail = call_daemon(home, socket_path, lambda client: client.job(job_id))
    if as_json:
        print_json(job.model_dump(mode="json"))
    else:
        render_job(job, wide=wide or output == "wide")
