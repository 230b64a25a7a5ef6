"""Compact human output for the remote commands (rich tables on stdout), fitted to the terminal.

Tables never wrap and never drop the columns people act on (ids, states): the fixed columns keep
their full width, and the flexible ones (prompts, errors, names) share what is left, cut with an
ellipsis. `wide` prints every column in full, as long as the lines get (like `kubectl -o wide`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from wfbatch.protocol import (
    BatchSummary,
    DaemonInfo,
    DeliveryInfo,
    ErrorInfo,
    Hold,
    JobDetail,
    JobSummary,
    ProviderStatus,
    Status,
    error_headline,
)
from wfbatch.protocol.states import OPEN, ORDER, STYLE, JobState

COLUMN_GAP = 3
"""What rich puts between two columns of these tables: padding, divider, padding."""
WIDE = 100_000
"""The console width for `--wide`: no line is ever cut."""
MIN_FLEX = 20
"""A flexible column narrower than this says too little: the optional columns go first."""


def console(wide: bool = False) -> Console:
    # No markup: prompts and error messages are user text, printed as they are.
    return Console(highlight=False, soft_wrap=False, markup=False, width=WIDE if wide else None)


@dataclass(frozen=True)
class Column:
    name: str
    flexible: bool = False
    """Takes a share of the width left by the fixed columns, cut with an ellipsis."""
    optional: bool = False
    """Shown only when the terminal has room for it (always with --wide)."""
    ratio: int = 1


def fit_widths(
    natural: Sequence[int], flexible: Sequence[bool], ratios: Sequence[int], room: int
) -> list[int]:
    """Column widths within `room` cells: fixed columns keep their natural width; flexible ones
    share the rest by ratio, none wider than it needs (its surplus goes to the others)."""
    widths = [n if not f else 0 for n, f in zip(natural, flexible, strict=True)]
    left = max(0, room - sum(widths))
    open_columns = [i for i, f in enumerate(flexible) if f]
    while open_columns:
        total_ratio = sum(ratios[i] for i in open_columns)
        share = {i: left * ratios[i] // total_ratio for i in open_columns}
        satisfied = [i for i in open_columns if natural[i] <= share[i]]
        if not satisfied:
            for i in open_columns:
                widths[i] = max(1, share[i])
            break
        for i in satisfied:
            widths[i] = natural[i]
            left -= natural[i]
            open_columns.remove(i)
    return widths


def fitted_table(out: Console, columns: Sequence[Column], rows: Sequence[Sequence[str | Text]]) -> Table:
    """A table of `rows` that fits `out`'s width, dropping optional columns before flexible ones
    get too narrow to read."""
    shown = list(range(len(columns)))

    def natural(i: int) -> int:
        cells = [columns[i].name, *(row[i] for row in rows)]
        return max(Text(c).cell_len if isinstance(c, str) else c.cell_len for c in cells)

    def layout() -> list[int]:
        room = out.width - COLUMN_GAP * (len(shown) - 1)
        return fit_widths(
            [natural(i) for i in shown],
            [columns[i].flexible for i in shown],
            [columns[i].ratio for i in shown],
            room,
        )

    def too_tight(widths: list[int]) -> bool:
        fixed = sum(natural(j) for j in shown if not columns[j].flexible)
        if fixed + COLUMN_GAP * (len(shown) - 1) > out.width:
            return True
        return any(
            w < min(MIN_FLEX, natural(j)) for w, j in zip(widths, shown, strict=True) if columns[j].flexible
        )

    widths = layout()
    for i in reversed(range(len(columns))):  # the rightmost optional column goes first
        if not too_tight(widths):
            break
        if columns[i].optional:
            shown.remove(i)
            widths = layout()
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, header_style="bold")
    for i, width in zip(shown, widths, strict=True):
        table.add_column(columns[i].name, width=width, no_wrap=True, overflow="ellipsis")
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    return table


def _flat(text: str) -> str:
    return " ".join(text.split())


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def counts_text(counts: dict[str, int]) -> Text:
    """`51 queued, 1 retrying, 76 done`: the states with jobs, in display order and colour."""
    shown = [state for state in ORDER if counts.get(state, 0)]
    if not shown:
        return Text("no jobs")
    return Text(", ").join(Text(f"{counts[state]} {state}", style=STYLE.get(state, "")) for state in shown)


def error_line(error: ErrorInfo) -> str:
    """`HTTP 404: not found`, or `execution failed: NSFW content detected` (a 2xx answer)."""
    return f"{error_headline(error.http_status)}: {_flat(error.message)}"


def error_cell(error: ErrorInfo) -> str:
    """The provider's words first, the kind after (`NSFW content detected (execution failed)`): a
    narrow column cut on the right keeps the part that says why, as the TUI's Failed tab does."""
    return f"{_flat(error.message)} ({error_headline(error.http_status)})"


def _provider_state(p: ProviderStatus) -> str:
    if p.paused:
        return "held"
    if p.blocked_for > 0:
        return f"waiting {duration(p.blocked_for)}"
    if p.start_wait() is not None:
        return "waiting"
    return "running" if p.in_flight else "idle"


def _window(used: int, limit: int | None) -> str:
    return f"{used}/{limit}" if limit is not None else f"{used}/-"


def short_ids(ids: Sequence[str], minimum: int = 7) -> dict[str, str]:
    """The shortest prefix (at least `minimum`) telling each of `ids` apart, as git shortens
    commits: every command takes a unique prefix of a batch id."""
    shortest: dict[str, str] = {}
    for batch_id in ids:
        length = minimum
        while length < len(batch_id) and any(
            other != batch_id and other.startswith(batch_id[:length]) for other in ids
        ):
            length += 1
        shortest[batch_id] = batch_id[:length]
    return shortest


def render_holds(holds: Sequence[Hold], out: Console, names: dict[str, str]) -> None:
    """Every hold, with its reason and what lifts it: "working" never hides "held by a budget"."""
    if not holds:
        return
    out.print(Text("held:", style="bold yellow"))
    for hold in holds:
        if hold.scope == "everything":
            what = "everything"
        elif hold.scope == "provider":
            what = f"provider {hold.target}"
        else:
            name = names.get(hold.target or "", "")
            what = f"batch {hold.target}" + (f" ({name})" if name else "")
        out.print(f"  {what}: {hold.reason}", soft_wrap=True)
        out.print(f"    to lift: {hold.lift}", soft_wrap=True)


def render_status(status: Status, wide: bool = False) -> None:
    out = console(wide)
    head = Text(f"wfbatch {status.version}: ").append_text(counts_text(status.jobs))
    if status.paused:
        head.append("  PAUSED", style="bold yellow")
    out.print(head, soft_wrap=True)
    if status.providers:
        columns = [
            Column("provider"), Column("in flight"), Column("req/min"), Column("starts/min", optional=True),
            Column("today"), Column("spent", optional=True), Column("state"),
            Column("why", flexible=True),
        ]
        rows: list[list[str | Text]] = []
        for p in status.providers.values():
            today = f"{p.daily_executions}/{p.daily_cap}" if p.daily_cap else str(p.daily_executions)
            why = p.paused or (p.block_reason if p.blocked_for > 0 else "") or ""
            wait = p.start_wait()
            if not why and wait is not None:
                why = wait[1]  # when the next start goes is said whole on a line below the table
            rows.append([
                p.name, f"{p.in_flight}/{p.max_in_flight}",
                _window(p.requests_in_window, p.requests_per_minute),
                _window(p.executions_in_window, p.executions_per_minute), today, f"{p.credits_used:.6g}",
                _provider_state(p), _flat(why),
            ])
        out.print(fitted_table(out, columns, rows))
        for p in status.providers.values():
            wait = p.start_wait()
            if wait is not None:  # whole, on a line of its own: the why column is cut at 80 columns
                out.print(f"{p.name}  next start in {duration(wait[0])}: {wait[1]}", soft_wrap=True)
            for server in p.servers:  # one line each: several GPUs, each up or down on its own
                out.print(f"{p.name}  {server.describe()}", soft_wrap=True)
            for account in p.accounts:  # one line each: every account is held or runs on its own
                out.print(f"{p.name}  account {account.describe()}", soft_wrap=True)
    for daemon in status.daemons:  # several daemons on one PostgreSQL queue: who serves what
        out.print(daemon_line(daemon), soft_wrap=True)
    if status.pipeline:
        out.print(pipeline_line(status.pipeline), soft_wrap=True)
    backlog = status.delivery
    if backlog.pending or backlog.held or backlog.done:
        line = Text(f"delivery: {backlog.done} uploaded, {backlog.pending} pending")
        if backlog.held:
            line.append(f", {backlog.held} held", style="bold yellow")
            line.append(f" ({'; '.join(backlog.held_reasons)})")
        out.print(line, soft_wrap=True)  # held reasons carry bucket names and URLs: never folded
    if status.batches:
        render_batches(status.batches, out, hold_of=status.hold_of)
    render_holds(status.holds, out, {b.id: b.name for b in status.batches})


def daemon_line(daemon: DaemonInfo) -> str:
    """One daemon of several: where it runs, how fresh its heartbeat is, which accounts it serves."""
    accounts = ", ".join(daemon.accounts) or "no account"
    mark = " (this one)" if daemon.this else ""
    return (
        f"daemon {daemon.host} pid {daemon.pid}{mark}: heartbeat {duration(daemon.heartbeat_age)} ago,"
        f" serves {accounts}"
    )


def pipeline_line(pipeline: dict[str, int]) -> str:
    """Where draft → final batches stand, in one line."""
    p = pipeline
    reviewed = f"{p.get('approved', 0)} approved, {p.get('rejected', 0)} rejected"
    return (
        f"drafts → finals: {p.get('drafts_done', 0)}/{p.get('drafts', 0)} drafts made, {reviewed};"
        f" {p.get('finals_done', 0)}/{p.get('finals', 0)} finals made"
    )


def render_batches(
    batches: list[BatchSummary], out: Console | None = None,
    hold_of: Callable[[BatchSummary], Hold | None] | None = None, wide: bool = False,
) -> None:
    out = out or console(wide)
    ids = short_ids([b.id for b in batches])
    columns = [
        Column("batch"), Column("name", flexible=True), Column("done"), Column("failed"), Column("left"),
        Column("share", optional=True), Column("eta"), Column("state"),
    ]
    rows: list[list[str | Text]] = []
    for b in batches:
        left = sum(b.counts.get(s, 0) for s in OPEN)
        if b.paused:
            state = "paused"
        elif not left:
            state = "finished"
        elif b.not_before is not None:
            state = f"scheduled {clock_time(b.not_before)}"
        elif b.pause_reason or (hold_of is not None and hold_of(b) is not None):
            state = "held"
        else:
            state = b.remote_progress() or "working"
        eta = duration(b.eta_seconds) if left and state not in ("paused", "held") else "-"
        rows.append([
            b.id if out.width >= WIDE else ids[b.id], _flat(b.name),
            f"{b.counts.get(JobState.DONE, 0)}/{b.total}", str(b.counts.get(JobState.FAILED, 0)), str(left),
            share_text(b), eta, state,
        ])
    out.print(fitted_table(out, columns, rows))


def share_text(batch: BatchSummary) -> str:
    """`50%`, `p5 100%`, `w2 67%`: its priority and weight where not the default, and the share of
    its provider's starts it gets now ('-' with nothing to start)."""
    parts = [f"p{batch.priority}"] if batch.priority else []
    if batch.weight != 1:
        parts.append(f"w{batch.weight:g}")
    parts.append("-" if batch.share is None else f"{batch.share:.0%}")
    return " ".join(parts)


def clock_time(moment: dt.datetime) -> str:
    """A time ahead in local time: `02:00` within a day, else with its date."""
    wall = moment.astimezone()
    if wall - dt.datetime.now(wall.tzinfo) < dt.timedelta(hours=23):
        return wall.strftime("%H:%M")
    return wall.strftime("%Y-%m-%d %H:%M")


def render_jobs(jobs: list[JobSummary], wide: bool = False, known_batches: Sequence[str] = ()) -> None:
    """`known_batches`: the ids the shortened batch ids must tell apart (the page's, at least)."""
    out = console(wide)
    if not jobs:
        out.print("no jobs match")
        return
    columns = [
        Column("id"), Column("batch", optional=True), Column("state"), Column("review", optional=True),
        Column("stage", optional=True), Column("tries", optional=True),
        Column("prompt", flexible=True, ratio=2), Column("error", flexible=True, ratio=3),
    ]
    ids = short_ids(sorted({j.batch_id for j in jobs} | set(known_batches)))
    rows: list[list[str | Text]] = []
    for j in jobs:
        rows.append([
            str(j.id), j.batch_id if wide else ids[j.batch_id], Text(j.state, style=STYLE.get(j.state, "")),
            j.review, stage_text(j),
            str(j.attempts), _flat(j.prompt), error_cell(j.error) if j.error is not None else "",
        ])
    out.print(fitted_table(out, columns, rows))


def stage_text(job: JobSummary) -> str:
    """`draft`, `draft → 12` (its final), `final of 3`, or `-` outside a draft → final batch."""
    if job.stage == "final":
        return f"final of {job.draft_of}"
    if job.stage == "draft":
        return "draft" if job.final_id is None else f"draft → {job.final_id}"
    return "-"


def _when(moment: dt.datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def delivery_line(delivery: DeliveryInfo) -> str:
    """`s3://bucket/key (etag ..., 2025-...)`, or where it stands and why."""
    if delivery.state == "done" and delivery.url:
        return f"{delivery.url} (etag {delivery.etag or '-'}, {_when(delivery.at)})"
    shown = f"{delivery.state}" + (f", now {delivery.url}" if delivery.url else "")
    return shown + (f": {delivery.error}" if delivery.error else "")


def render_job(job: JobDetail, wide: bool = False) -> None:
    out = console(wide)
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
    if job.progress is not None:
        rows.insert(2, ("progress", job.progress.text()))
    if job.error is not None:
        e = job.error
        answered = e.http_status is not None and 200 <= e.http_status < 300
        status = f" (the provider answered HTTP {e.http_status})" if answered else ""
        rows.append(("error", f"{error_line(e)}{status} [request id {e.request_id or '-'}]"))
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
        columns = [
            Column("at"), Column("kind"), Column("outcome"), Column("http"),
            Column("request id", flexible=True, optional=True), Column("message", flexible=True, ratio=3),
        ]
        table_rows: list[list[str | Text]] = [
            [_when(a.at), a.kind, a.outcome, str(a.http_status or "-"), a.request_id or "-",
             _flat(a.message or "")]
            for a in job.attempts_history
        ]
        out.print(fitted_table(out, columns, table_rows))
