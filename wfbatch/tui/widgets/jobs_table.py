"""The jobs table: one tab's jobs, as pages the screen loads through the API (never whole).

The screen owns the client and the workers; this widget only shows what it is given through its
reactive attributes: `page` (rows to show: a first page, a re-read, or one more page), and
`batch_names` (names for the batch column, which may arrive after the rows). A refresh keeps the
cursor on the same job and the scroll where it was. Columns fit the width: the ids and states
keep theirs, the error (Failed tab) or the prompt takes the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.binding import Binding, BindingType
from textual.events import Resize
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable

from wfbatch.protocol import MAX_PAGE, JobProgress, JobState, JobSummary, error_headline
from wfbatch.protocol.states import STYLE
from wfbatch.tui.formatting import duration, final_marker, one_line
from wfbatch.tui.tabs import JobTab

PAGE_SIZE = 150
NEAR_END = 30
MARK = "●"
CELL_PADDING = 2
"""DataTable pads every cell by one on each side."""
CHROME = 2
"""The vertical scrollbar takes this much of the table's content width."""

Cell = str | Text


@dataclass(frozen=True)
class JobQuery:
    tab: JobTab = JobTab.QUEUED
    batch_id: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class JobsPage:
    """Rows for the table: `append` adds a further page; otherwise the rows replace what is shown
    (the first page of a query, or a re-read of the rows on screen)."""

    query: JobQuery
    items: tuple[JobSummary, ...]
    next_cursor: str | None
    append: bool = False


@dataclass(frozen=True)
class ColumnSpec:
    key: str
    label: str
    width: int
    flex: int = 0
    """A share of the width left by the fixed columns (0: fixed)."""
    drop_below: int = 0
    """Shown only when the table is at least this wide."""


_LEADING = [
    ColumnSpec("mark", " ", 1),
    ColumnSpec("id", "id", 6),
    ColumnSpec("batch", "batch", 14, drop_below=110),
    ColumnSpec("state", "state", 10),
    ColumnSpec("att", "att", 3, drop_below=100),
]
_TAB_COLUMNS: dict[JobTab, list[ColumnSpec]] = {
    JobTab.QUEUED: [ColumnSpec("prompt", "prompt", 20, flex=1)],
    JobTab.RUNNING: [
        ColumnSpec("for", "running for", 11),
        ColumnSpec("progress", "progress", 9),
        ColumnSpec("remote", "remote id", 20, drop_below=120),
        ColumnSpec("prompt", "prompt", 20, flex=1),
    ],
    # The reason a job failed is what this tab is for: it gets most of the width, the prompt the rest.
    JobTab.FAILED: [
        ColumnSpec("http", "HTTP", 4),
        ColumnSpec("request", "request id", 18, drop_below=160),
        ColumnSpec("error", "why it failed", 24, flex=3),
        ColumnSpec("prompt", "prompt", 12, flex=2, drop_below=100),
    ],
    JobTab.DONE: [
        ColumnSpec("file", "file", 16, flex=1),
        ColumnSpec("final", "final", 12, drop_below=100),
        ColumnSpec("prompt", "prompt", 20, flex=2),
    ],
    JobTab.REVIEW: [
        ColumnSpec("file", "file", 16, flex=1),
        ColumnSpec("final", "final", 12, drop_below=100),
        ColumnSpec("prompt", "prompt", 20, flex=2),
    ],
}


def fit_columns(tab: JobTab, width: int) -> list[tuple[ColumnSpec, int]]:
    """The columns a table `width` cells wide shows for `tab`, each with its width."""
    specs = [c for c in _LEADING + _TAB_COLUMNS[tab] if width >= c.drop_below]
    room = width - CHROME - CELL_PADDING * len(specs) - sum(c.width for c in specs if not c.flex)
    flex_total = sum(c.flex for c in specs if c.flex) or 1
    widths = []
    for spec in specs:
        if spec.flex:
            widths.append(max(spec.width, room * spec.flex // flex_total))
        else:
            widths.append(spec.width)
    return list(zip(specs, widths, strict=True))


def failure_text(job: JobSummary) -> str:
    """The provider's own words for why the job failed: no "HTTP 200:"-style prefix (the HTTP
    column has the status; a failed execution says so there)."""
    if job.error is not None:
        return one_line(job.error.message)
    return JobState.CANCELED.value if job.state is JobState.CANCELED else ""


def http_cell(job: JobSummary) -> Text:
    if job.error is None:
        return Text("")
    status = job.error.http_status
    if error_headline(status) == "execution failed":
        return Text("exec", style="bold red")  # the provider ran it and it failed: not an HTTP error
    return Text(str(status) if status is not None else "—", style="bold red")


def file_cell(job: JobSummary) -> str:
    """The image's file name: its folder (pending-review/, approved/) is what the tab already says,
    and in a 16-cell column it left no room for the name."""
    name = PurePosixPath(job.file).name if job.file else "—"
    return name + (" (cached)" if job.cache_hit else "")


def running_for(job: JobSummary, now: datetime) -> str:
    return duration((now - job.updated_at).total_seconds())


def progress_cell(progress: JobProgress | None) -> str:
    """`12/20`, or the phase a provider without step counts reports; blank when none is known."""
    return progress.short() if progress is not None else ""


class JobsTable(DataTable[Cell]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "details", show=False),
        Binding("home,g", "first", "first", show=False),
        Binding("end,G", "last", "last", show=False),
    ]

    class NeedMore(Message):
        """The cursor nears the end of the loaded rows and there are more: load the next page."""

    page: reactive[JobsPage | None] = reactive(None, always_update=True, init=False)
    batch_names: reactive[dict[str, str]] = reactive(dict, always_update=True, init=False)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.job_query = JobQuery()
        self.jobs: dict[int, JobSummary] = {}
        self.marked: set[int] = set()
        self.next_cursor: str | None = None
        self.fetching = False
        """A page is being fetched (the screen sets it; `loading`, the indicator, only while the
        table has no rows of the query yet)."""
        self.loaded = False
        """At least one page arrived for the current query (an empty table then means "no jobs")."""
        self._layout: list[tuple[ColumnSpec, int]] = []

    def on_mount(self) -> None:
        self._set_columns()

    # -- what to show -------------------------------------------------------------------------

    def set_query(self, query: JobQuery) -> bool:
        """Show `query`'s jobs from now on; True when it changed (the screen then loads a page)."""
        if query == self.job_query and self.loaded:
            return False
        tab_changed = query.tab != self.job_query.tab
        self.job_query = query
        self.marked.clear()
        self.next_cursor = None
        self.loaded = False
        if tab_changed:
            self._set_columns()
        return True

    def _set_columns(self) -> None:
        """(Re)build the columns for the tab and the width, keeping the rows and the cursor's job."""
        layout = fit_columns(self.job_query.tab, self.size.width or 120)
        if [(s.key, w) for s, w in layout] == [(s.key, w) for s, w in self._layout]:
            return
        self._layout = layout
        keep = self.highlighted
        self.clear(columns=True)
        for spec, width in layout:
            self.add_column(spec.label, key=spec.key, width=width)
        for job in self.jobs.values():
            self.add_row(*self._cells(job), key=str(job.id))
        self._restore_cursor(keep, 0)

    def on_resize(self, event: Resize) -> None:
        self._set_columns()

    @property
    def highlighted(self) -> JobSummary | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return self.jobs.get(int(key)) if key is not None else None

    def selected_ids(self) -> list[int]:
        """The marked jobs, or else the highlighted one."""
        if self.marked:
            return sorted(self.marked)
        job = self.highlighted
        return [job.id] if job else []

    def toggle_mark(self) -> None:
        job = self.highlighted
        if job is None:
            return
        if job.id in self.marked:
            self.marked.discard(job.id)
        else:
            self.marked.add(job.id)
        self.update_cell(str(job.id), "mark", MARK if job.id in self.marked else "")
        if self.cursor_row < self.row_count - 1:
            self.move_cursor(row=self.cursor_row + 1)

    def clear_marks(self) -> None:
        for job_id in list(self.marked):
            if str(job_id) in self.rows:
                self.update_cell(str(job_id), "mark", "")
        self.marked.clear()

    # -- data in ------------------------------------------------------------------------------

    def watch_page(self, page: JobsPage | None) -> None:
        if page is None or page.query != self.job_query:
            return  # an answer to a query the user has left
        self.next_cursor = page.next_cursor
        if page.append:
            for job in page.items:
                if job.id not in self.jobs:
                    self.jobs[job.id] = job
                    self.add_row(*self._cells(job), key=str(job.id))
            return
        keep = self.highlighted if self.loaded else None
        keep_row = self.cursor_row if self.loaded else 0
        scroll_y = self.scroll_y if self.loaded else 0.0
        new_ids = [job.id for job in page.items]
        if self.loaded and new_ids == list(self.jobs):
            # The same rows in the same order: update the cells in place (nothing moves).
            for job in page.items:
                self.jobs[job.id] = job
                for (spec, _), value in zip(self._layout, self._cells(job), strict=True):
                    self.update_cell(str(job.id), spec.key, value)
        else:
            self.clear()
            self.jobs = {job.id: job for job in page.items}
            for job in page.items:
                self.add_row(*self._cells(job), key=str(job.id))
            self._restore_cursor(keep, keep_row)
            self.scroll_to(y=scroll_y, animate=False, immediate=True)
        self.marked &= set(self.jobs)
        self.loaded = True

    def _restore_cursor(self, keep: JobSummary | None, keep_row: int) -> None:
        if keep is not None and str(keep.id) in self.rows:
            self.move_cursor(row=self.get_row_index(str(keep.id)), animate=False, scroll=False)
        elif self.row_count:
            self.move_cursor(row=min(keep_row, self.row_count - 1), animate=False, scroll=False)

    def watch_batch_names(self, names: dict[str, str]) -> None:
        if not any(spec.key == "batch" for spec, _ in self._layout):
            return
        for job in self.jobs.values():
            self.update_cell(str(job.id), "batch", one_line(names.get(job.batch_id, job.batch_id), 40))

    def apply_states(self, job_states: Mapping[int, JobState]) -> bool:
        """Update state cells in place; True when a job on screen changed state."""
        changed = False
        for job_id, state in job_states.items():
            job = self.jobs.get(job_id)
            if job is None or job.state == state:
                continue
            self.jobs[job_id] = job.model_copy(update={"state": state})
            self.update_cell(str(job_id), "state", Text(state, style=STYLE.get(state, "")))
            changed = True
        return changed

    def apply_progress(self, progress: Mapping[int, JobProgress | None]) -> None:
        """Update progress cells in place (events only name running jobs: nothing moves)."""
        shown = any(spec.key == "progress" for spec, _ in self._layout)
        for job_id, value in progress.items():
            job = self.jobs.get(job_id)
            if job is None or job.progress == value:
                continue
            self.jobs[job_id] = job.model_copy(update={"progress": value})
            if shown:
                self.update_cell(str(job_id), "progress", progress_cell(value))

    def tick_running_for(self, now: datetime | None = None) -> None:
        """The Running tab's clock moves without any event."""
        if self.job_query.tab is not JobTab.RUNNING:
            return
        now = now or datetime.now(UTC)
        for job in self.jobs.values():
            self.update_cell(str(job.id), "for", running_for(job, now))

    @property
    def reload_limit(self) -> int:
        """How many rows a re-read asks for: the ones on screen (at least a page)."""
        return min(max(PAGE_SIZE, self.row_count), MAX_PAGE)

    @property
    def too_deep_to_reload(self) -> bool:
        return self.row_count > MAX_PAGE

    # -- navigation ---------------------------------------------------------------------------

    def action_first(self) -> None:
        if self.row_count:
            self.move_cursor(row=0, animate=False)

    def action_last(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1, animate=False)

    @on(DataTable.RowHighlighted)
    def _maybe_load_more(self, event: DataTable.RowHighlighted) -> None:
        if self.next_cursor and not self.fetching and event.cursor_row >= self.row_count - NEAR_END:
            self.post_message(self.NeedMore())

    # -- cells --------------------------------------------------------------------------------

    def _cells(self, job: JobSummary) -> list[Cell]:
        keys = [spec.key for spec, _ in self._layout]
        values: dict[str, Cell] = {
            "mark": MARK if job.id in self.marked else "",
            "id": str(job.id),
            "batch": one_line(self.batch_names.get(job.batch_id, job.batch_id), 40),
            "state": Text(job.state, style=STYLE.get(job.state, "")),
            "att": str(job.attempts),
            "prompt": one_line(job.prompt),
            "for": running_for(job, datetime.now(UTC)),
            "progress": progress_cell(job.progress),
            "remote": job.remote_id or "—",
            "http": http_cell(job),
            "request": (job.error.request_id if job.error else None) or "—",
            "error": Text(failure_text(job), style="red"),
            "file": file_cell(job),
            "final": final_marker(job),
        }
        # A DataTable reads a str cell as Rich markup: a prompt "a cat [in the style of Monet]"
        # lost its bracket, and "[red]" coloured it. Plain text shows what was written.
        return [Text(value) if isinstance(value, str) else value for value in (values[key] for key in keys)]

