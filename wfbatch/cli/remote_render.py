"""Compact human output for the remote commands (rich tables on stdout)."""

from __future__ import annotations

import datetime as dt

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from wfbatch.protocol import BatchSummary, DeliveryInfo, JobDetail, JobSummary, ProviderStatus, Status

STATE_ORDER = ("queued", "submitting", "running", "retrying", "done", "failed", "canceled")
PROMPT_WIDTH = 48


def console() -> Console:
    # No markup: prompts and error messages are user text, printed as they are.
    return Console(highlight=False, soft_wrap=False, markup=False)


def _table(*columns: str) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="ellipsis", no_wrap=True)
    return table


def _short(text: str, width: int = PROMPT_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def counts_line(counts: dict[str, int]) -> str:
    return ", ".join(f"{counts.get(s, 0)} {s}" for s in STATE_ORDER if counts.get(s, 0)) or "no jobs"


def _provider_state(p: ProviderStatus) -> str:
    if p.paused:
        return f"paused: {p.paused}"
    if p.blocked_for > 0:
        return f"waiting {duration(p.blocked_for)}: {p.block_reason or 'rate limited'}"
    return "running" if p.in_flight else "idle"


def _window(used: int, limit: int | None) -> str:
    return f"{used}/{limit}" if limit is not None else f"{used}/-"


def render_status(status: Status) -> None:
    out = console()
    head = Text(f"wfbatch {status.version}: {counts_line(status.jobs)}")
    if status.paused:
        head.append("  PAUSED", style="bold yellow")
        head.append(f" ({status.pause_reason})")
    out.print(head)
    if status.providers:
        table = _table("provider", "in flight", "req/min", "starts/min", "today", "credits", "state")
        for p in status.providers.values():
            today = f"{p.daily_executions}/{p.daily_cap}" if p.daily_cap else str(p.daily_executions)
            table.add_row(
                p.name,
                f"{p.in_flight}/{p.max_in_flight}",
                _window(p.requests_in_window, p.requests_per_minute),
                _window(p.executions_in_window, p.executions_per_minute), today, f"{p.credits_used:g}",
                _provider_state(p),
            )
        out.print(table)
    if status.pipeline:
        out.print(pipeline_line(status.pipeline))
    backlog = status.delivery
    if backlog.pending or backlog.held or backlog.done:
        line = Text(f"delivery: {backlog.done} uploaded, {backlog.pending} pending")
        if backlog.held:
            line.append(f", {backlog.held} held", style="bold yellow")
            line.append(f" ({'; '.join(backlog.held_reasons)})")
        out.print(line)
    if status.batches:
        render_batches(status.batches, out)


def pipeline_line(pipeline: dict[str, int]) -> str:
    """Where draft → final batches stand, in one line."""
    p = pipeline
    reviewed = f"{p.get('approved', 0)} approved, {p.get('rejected', 0)} rejected"
    return (
        f"drafts → finals: {p.get('drafts_done', 0)}/{p.get('drafts', 0)} drafts made, {reviewed};"
        f" {p.get('finals_done', 0)}/{p.get('finals', 0)} finals made"
    )


def render_batches(batches: list[BatchSummary], out: Console | None = None) -> None:
    out = out or console()
    table = _table("batch", "name", "done", "failed", "left", "eta", "state")
    for b in batches:
        left = sum(b.counts.get(s, 0) for s in ("queued", "submitting", "running", "retrying"))
        state = "paused" if b.paused else ("finished" if not left else (b.remote_progress() or "working"))
        table.add_row(
            b.id, _short(b.name, 28), f"{b.counts.get('done', 0)}/{b.total}", str(b.counts.get("failed", 0)),
            str(left), duration(b.eta_seconds) if left else "-", state,
        )
    out.print(table)


def render_jobs(jobs: list[JobSummary]) -> None:
    out = console()
    if not jobs:
        out.print("no jobs match")
        return
    table = _table("id", "batch", "state", "review", "stage", "tries", "prompt", "error")
    for j in jobs:
        error = ""
        if j.error is not None:
            status = j.error.http_status if j.error.http_status is not None else "-"
            error = _short(f"HTTP {status}: {j.error.message}", 50)
        table.add_row(
            str(j.id), j.batch_id, j.state, j.review, stage_text(j), str(j.attempts), _short(j.prompt), error
        )
    out.print(table)


def stage_text(job: JobSummary) -> str:
    """`draft`, `draft → 12` (its final), `final of 3`, or `-` outside a draft → final batch."""
    if job.stage == "final":
        return f"final of {job.draft_of}"
    if job.stage == "draft":
        return "draft" if job.final_id is None else f"draft → {job.final_id}"
    return "-"


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return dt.datetime.fromtimestamp(timestamp).isoformat(sep=" ", timespec="seconds")


def delivery_line(delivery: DeliveryInfo) -> str:
    """`s3://bucket/key (etag ..., 2025-...)`, or where it stands and why."""
    if delivery.state == "done" and delivery.url:
        return f"{delivery.url} (etag {delivery.etag or '-'}, {_when(delivery.at)})"
    shown = f"{delivery.state}" + (f", now {delivery.url}" if delivery.url else "")
    return shown + (f": {delivery.error}" if delivery.error else "")


def render_job(job: JobDetail) -> None:
    out = console()
    rows = [
        ("job", f"{job.id} (batch {job.batch_id}, entry {job.index}, line {job.line})"),
        ("state", f"{job.state}, review {job.review}, {job.attempts} attempt(s)"),
        ("prompt", job.prompt),
        ("negative", job.negative_prompt or "-"),
        ("provider", f"{job.provider}" + (f", model {job.model}" if job.model else "")),
        ("image", f"{job.width}x{job.height} {job.format}, seed {job.seed}, variant {job.variant}"),
        ("file", job.file_path or "-"),
        ("remote id", job.remote_id or "-"),
        ("cache hit", "yes" if job.cache_hit else "no"),
    ]
    if job.error is not None:
        e = job.error
        rows.append(("error", f"HTTP {e.http_status or '-'}: {e.message} [request id {e.request_id or '-'}]"))
    if job.next_attempt_at:
        rows.append(("next try", _when(job.next_attempt_at)))
    if job.stage == "draft":
        none_yet = "none yet (approving the draft queues it)"
        rows.append(("final", f"job {job.final_id}" if job.final_id is not None else none_yet))
    elif job.stage == "final":
        rows.append(("draft", f"job {job.draft_of} (this final was regenerated from its prompt and seed)"))
    if job.credits is not None:
        rows.append(("credits", f"{job.credits:g}"))
    if job.possible_duplicate_charge:
        rows.append(("charged?", f"possibly twice: {job.possible_duplicate_charge_why}"))
    if job.delivery is not None:
        rows.append(("delivered", delivery_line(job.delivery)))
    for key, value in rows:
        out.print(Text.assemble((f"{key:>10}", "bold"), "  ", value), soft_wrap=True)
    if job.attempts_history:
        table = _table("at", "kind", "outcome", "http", "request id", "message")
        for a in job.attempts_history:
            table.add_row(
                _when(a.at), a.kind, a.outcome, str(a.http_status or "-"), a.request_id or "-",
                _short(a.message or "", 60),
            )
        out.print(table)
