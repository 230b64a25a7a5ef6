"""Small pure helpers that turn API values into short strings and rich Text for the screen."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text

from wfbatch.protocol import ErrorInfo, JobSummary, ProviderStatus


def duration(seconds: float | None) -> str:
    """`42s`, `3m05s`, `2h07m`, `3d04h`; an em dash when unknown."""
    if seconds is None:
        return "—"
    total = max(0, round(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def clock(moment: datetime | None) -> str:
    """Local wall-clock time of a moment, `YYYY-MM-DD HH:MM:SS`."""
    if moment is None:
        return "—"
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def clock_time(moment: datetime) -> str:
    """A time ahead in local time: `02:00` within a day, else with its date."""
    wall = moment.astimezone()
    if (wall - datetime.now(wall.tzinfo)).total_seconds() < 23 * 3600:
        return wall.strftime("%H:%M")
    return wall.strftime("%Y-%m-%d %H:%M")


def progress_bar(done: int, failed: int, total: int, width: int = 24, canceled: int = 0) -> Text:
    """A stacked bar: done in green, failed in red, canceled shaded red, the rest dim. Canceled jobs
    are finished too: without them a batch with one canceled job never showed a full bar."""
    bar = Text()
    if total <= 0:
        return bar.append("─" * width, style="dim")
    done_cells = round(width * done / total)
    failed_cells = min(width - done_cells, round(width * failed / total))
    if failed and not failed_cells and done_cells < width:
        failed_cells = 1  # one failure in a million still deserves a red cell
    canceled_cells = min(width - done_cells - failed_cells, round(width * canceled / total))
    if canceled and not canceled_cells and done_cells + failed_cells < width:
        canceled_cells = 1
    rest = width - done_cells - failed_cells - canceled_cells
    bar.append("█" * done_cells, style="green")
    bar.append("█" * failed_cells, style="red")
    bar.append("▓" * canceled_cells, style="red")
    bar.append("░" * rest, style="grey50")
    return bar


def finished_counts(done: int, failed: int, canceled: int, total: int) -> Text:
    """`58/1/100`, or `58/1+2/100` with canceled jobs (as the Failed tab counts them)."""
    counts = Text()
    counts.append(str(done), style="green")
    counts.append("/")
    counts.append(str(failed), style="red" if failed else "")
    if canceled:
        counts.append(f"+{canceled}", style="red")
    counts.append(f"/{total}")
    return counts


def of_limit(used: int, limit: int | None) -> str:
    return f"{used}/{limit if limit is not None else '∞'}"


def provider_pause_text(provider: ProviderStatus) -> str | None:
    """Why the provider starts nothing, in words; None when it runs."""
    details = provider.pause_details
    if details.get("kind") == "credits" and "required" in details:
        return f"out of credits: {details['required']} required, {details.get('available', '?')} available"
    return provider.paused


def error_text(error: ErrorInfo | None) -> tuple[str, str, str]:
    """(HTTP status, request id, message) of a job's last error, for table cells."""
    if error is None:
        return ("", "", "")
    return (
        str(error.http_status) if error.http_status is not None else "—",
        error.request_id or "—",
        error.message,
    )


def one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def final_marker(job: JobSummary) -> Text:
    """The Review and Done tabs' `final` column: a draft waits for approval to queue its final
    (`draft`), an approved one points at it (`→ 12`), a final names its draft (`final of 3`)."""
    if job.stage == "final":
        return Text(f"final of {job.draft_of}", style="bold green")
    if job.stage == "draft":
        return Text("draft" if job.final_id is None else f"→ {job.final_id}", style="cyan")
    return Text("")
