"""The jobs table: one tab's jobs, paged through the API by cursor, never loaded whole.

A page of `PAGE_SIZE` rows is loaded at first; moving the cursor within `NEAR_END` rows of the
end loads the next page. A live refresh re-reads the rows already loaded (up to the API's
`MAX_PAGE` in one call); deeper than that, rows are updated in place from the events instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.binding import Binding, BindingType
from textual.widgets import DataTable

from wfbatch.protocol import MAX_PAGE, JobSummary, Page
from wfbatch.tui.connection import CONNECTION_ERRORS, describe
from wfbatch.tui.daemon_api import DaemonApi
from wfbatch.tui.formatting import error_text, final_marker, one_line
from wfbatch.tui.tabs import TAB_SPECS, JobTab

PAGE_SIZE = 150
NEAR_END = 30
MARK = "●"

Cell = str | Text

STATE_STYLES = {
    "failed": "bold red",
    "canceled": "red",
    "retrying": "yellow",
    "running": "cyan",
    "submitting": "cyan",
    "done": "green",
}


@dataclass(frozen=True)
class JobQuery:
    tab: JobTab = JobTab.QUEUED
    batch_id: str | None = None
    text: str | None = None


# (key, label, width) per tab, after the shared leading columns.
_LEADING = [
    ("mark", " ", 1), ("id", "id", 6), ("batch", "batch", 14), ("state", "state", 10), ("att", "att", 3)
]
_TAB_COLUMNS: dict[JobTab, list[tuple[str, str, int]]] = {
    JobTab.QUEUED: [("prompt", "prompt", 68)],
    JobTab.RUNNING: [("remote", "remote id", 20), ("prompt", "prompt", 46)],
    JobTab.FAILED: [("http", "HTTP", 4), ("request", "request id", 18), ("error", "error", 26),
                    ("prompt", "prompt", 16)],
    JobTab.DONE: [("file", "file", 32), ("final", "final", 12), ("prompt", "prompt", 22)],
    JobTab.REVIEW: [("file", "file", 32), ("final", "final", 12), ("prompt", "prompt", 22)],
}


class JobsTable(DataTable[Cell]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "select_cursor", "details")]

    def __init__(self, client: DaemonApi, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.client = client
        self.job_query = JobQuery()
        self.jobs: dict[int, JobSummary] = {}
        self.marked: set[int] = set()
        self.batch_names: dict[str, str] = {}
        self.next_cursor: str | None = None
        self.loading = False
        self.loaded = False
        """At least one page arrived for the current query (an empty table then means "no jobs")."""

    def on_mount(self) -> None:
        self._add_columns(self.job_query.tab)

    # -- what to show -------------------------------------------------------------------------

    def set_query(self, query: JobQuery) -> None:
        if query == self.job_query and self.loaded:
            return
        if query.tab != self.job_query.tab:
            self.clear(columns=True)
            self._add_columns(query.tab)
        self.job_query = query
        self.marked.clear()
        self.next_cursor = None
        self.loaded = False
        self.reload(reset=True)

    def _add_columns(self, tab: JobTab) -> None:
        for key, label, width in _LEADING + _TAB_COLUMNS[tab]:
            self.add_column(label, key=key, width=width)

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

    # -- loading ------------------------------------------------------------------------------

    async def _fetch(self, cursor: str | None, limit: int) -> Page[JobSummary] | None:
        spec = TAB_SPECS[self.job_query.tab]
        self.loading = True
        try:
            return await self.client.jobs(
                states=spec.states,
                review=spec.review,
                batch_id=self.job_query.batch_id,
                text=self.job_query.text,
                cursor=cursor,
                limit=limit,
            )
        except CONNECTION_ERRORS as error:
            self.notify(f"could not load jobs: {describe(error)}", severity="warning")
            return None
        finally:
            self.loading = False

    @work(exclusive=True, group="jobs-load")
    async def reload(self, reset: bool = False) -> None:
        """Re-read the rows on screen (or the first page after `reset`), keeping the cursor's job."""
        limit = PAGE_SIZE if reset else min(max(PAGE_SIZE, self.row_count), MAX_PAGE)
        query = self.job_query
        page = await self._fetch(None, limit)
        if page is None or query != self.job_query:
            return
        keep = None if reset else self.highlighted
        keep_row = 0 if reset else self.cursor_row
        self.clear()
        self.jobs.clear()
        self._append(page)
        self.loaded = True
        if keep is not None and str(keep.id) in self.rows:
            self.move_cursor(row=self.get_row_index(str(keep.id)), animate=False, scroll=False)
        elif self.row_count:
            self.move_cursor(row=min(keep_row, self.row_count - 1), animate=False, scroll=False)
        self.marked &= set(self.jobs)

    @work(exclusive=True, group="jobs-load")
    async def load_more(self) -> None:
        if self.next_cursor is None:
            return
        query = self.job_query
        page = await self._fetch(self.next_cursor, PAGE_SIZE)
        if page is not None and query == self.job_query:
            self._append(page)

    def _append(self, page: Page[JobSummary]) -> None:
        self.next_cursor = page.next_cursor
        for job in page.items:
            if job.id in self.jobs:
                continue
            self.jobs[job.id] = job
            self.add_row(*self._cells(job), key=str(job.id))

    def apply_states(self, job_states: Mapping[int, str]) -> bool:
        """Update state cells in place; True when a job on screen changed state."""
        changed = False
        for job_id, state in job_states.items():
            job = self.jobs.get(job_id)
            if job is None or job.state == state:
                continue
            self.jobs[job_id] = replace_state(job, state)
            self.update_cell(str(job_id), "state", Text(state, style=STATE_STYLES.get(state, "")))
            changed = True
        return changed

    @property
    def shows_states(self) -> set[str]:
        return set(TAB_SPECS[self.job_query.tab].states) | {j.state for j in self.jobs.values()}

    @property
    def too_deep_to_reload(self) -> bool:
        return self.row_count > MAX_PAGE

    @on(DataTable.RowHighlighted)
    def _maybe_load_more(self, event: DataTable.RowHighlighted) -> None:
        if self.next_cursor and not self.loading and event.cursor_row >= self.row_count - NEAR_END:
            self.load_more()

    # -- cells --------------------------------------------------------------------------------

    def _cells(self, job: JobSummary) -> list[Cell]:
        batch = self.batch_names.get(job.batch_id, job.batch_id)
        cells: list[Cell] = [
            MARK if job.id in self.marked else "",
            str(job.id),
            one_line(batch, 40),
            Text(job.state, style=STATE_STYLES.get(job.state, "")),
            str(job.attempts),
        ]
        prompt = one_line(job.prompt)
        tab = self.job_query.tab
        if tab is JobTab.RUNNING:
            cells += [job.remote_id or "—", prompt]
        elif tab is JobTab.FAILED:
            http, request_id, message = error_text(job.error)
            cells += [Text(http, style="bold red"), request_id, one_line(message), prompt]
        elif tab in (JobTab.DONE, JobTab.REVIEW):
            file = (job.file or "—") + (" (cached)" if job.cache_hit else "")
            cells += [file, final_marker(job), prompt]
        else:
            cells += [prompt]
        return cells


def replace_state(job: JobSummary, state: str) -> JobSummary:
    return job.model_copy(update={"state": state})

