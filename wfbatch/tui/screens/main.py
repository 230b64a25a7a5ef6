"""The main screen: header, batches, job tabs with their table, the detail pane, and the keys.

Live updates arrive as `ChangeSet`s (merged in the message queue) and are applied by a 4 Hz
timer that does nothing unless something changed; `/v1/status` is also re-read every couple of
seconds, since the limiter gauges move without events.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.dom import NoScreen
from textual.events import Resize
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static, Tab, Tabs

from wfbatch.client import ApiError, DaemonClient
from wfbatch.protocol import (
    CancelRequest,
    CommandResult,
    Health,
    JobState,
    PauseRequest,
    RetryRequest,
    ReviewRequest,
    Status,
)
from wfbatch.protocol.states import IN_FLIGHT, ORDER, RETRYABLE
from wfbatch.tui.changes import ChangeSet
from wfbatch.tui.connection import LOST_CONNECTION, describe
from wfbatch.tui.messages import ConnectionTrouble
from wfbatch.tui.screens.confirm import ConfirmScreen
from wfbatch.tui.screens.edit import EditPromptScreen
from wfbatch.tui.tabs import TAB_SPECS, JobTab
from wfbatch.tui.widgets.batches import BatchesPanel
from wfbatch.tui.widgets.detail import DetailPane
from wfbatch.tui.widgets.header import StatusHeader
from wfbatch.tui.widgets.jobs_table import PAGE_SIZE, JobQuery, JobsPage, JobsTable

REFRESH_INTERVAL = 0.25
NARROW = 110
"""Below this width the detail pane takes the whole width while it is open."""
SHORT = 32
"""Below this height the batches panel shrinks to leave the jobs table its rows."""


def job_names(ids: list[int]) -> str:
    """`job 61`, `jobs 61, 62, 63`, `jobs 1, 2, 3, 4, 5 and 7 more`."""
    if len(ids) == 1:
        return f"job {ids[0]}"
    shown = ", ".join(str(i) for i in ids[:5])
    return f"jobs {shown}" + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


class MainScreen(Screen[None]):
    """Owns the daemon client and every worker that calls it; the widgets get the answers through
    their reactive attributes (`header.status`, `batches.status`, `jobs.page`, `detail.job`)."""

    AUTO_FOCUS = "#jobs"
    BINDINGS: ClassVar[list[BindingType]] = [
        *(Binding(s.key, f"show_tab('{s.tab.value}')", s.title, show=False) for s in TAB_SPECS.values()),
        Binding("r", "retry", "retry"),
        Binding("R", "retry_failed", "retry failed", show=False),
        Binding("c", "cancel", "cancel"),
        Binding("e", "edit", "edit"),
        Binding("a", "review('approve')", "approve"),
        Binding("x", "review('reject')", "reject"),
        Binding("p", "pause_batch", "pause"),
        Binding("P", "pause_all", "pause all", show=False),
        Binding("space", "mark", "select", show=False),
        Binding("slash", "filter", "filter"),
        Binding("enter", "details", "details"),
        Binding("escape", "back", "back", show=False),
    ]

    def __init__(self, client: DaemonClient, *, status_interval: float = 2.0, graphics: bool = True) -> None:
        super().__init__()
        self.client = client
        self.status_interval = status_interval
        self.graphics = graphics
        self.health: Health | None = None
        self.status: Status | None = None
        self.pending = ChangeSet()
        self.status_loading = False

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="status")
        yield BatchesPanel(id="batches")
        with Horizontal(id="tabs-row"):
            yield Tabs(*(Tab(f"{s.key} {s.title}", id=s.tab.value) for s in TAB_SPECS.values()), id="tabs")
            yield Static("", id="filter-label")
        yield Input(placeholder="filter prompts by text, enter applies, escape clears", id="filter")
        with Horizontal(id="work"):
            yield JobsTable(id="jobs")
            yield DetailPane(id="detail", graphics=self.graphics)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(Tabs).can_focus = False
        self.query_one("#filter", Input).display = False
        self.query_one(DetailPane).display = False
        self.query_one(StatusHeader).socket = str(self.client.socket_path)
        self.jobs.border_title = "Jobs"
        self.jobs.focus()
        self.set_interval(REFRESH_INTERVAL, self._flush)
        self.set_interval(self.status_interval, self._tick_status)
        self.set_interval(1.0, self.jobs.tick_running_for)

    def on_resize(self, event: Resize) -> None:
        self.set_class(event.size.width < NARROW, "narrow")
        self.set_class(event.size.height < SHORT, "short")

    @property
    def jobs(self) -> JobsTable:
        return self.query_one(JobsTable)

    @property
    def batches(self) -> BatchesPanel:
        return self.query_one(BatchesPanel)

    @property
    def detail(self) -> DetailPane:
        return self.query_one(DetailPane)

    @property
    def tab(self) -> JobTab:
        return self.jobs.job_query.tab

    # -- live data ----------------------------------------------------------------------------

    def attached(self, health: Health) -> None:
        """The daemon (re)appeared: reload everything."""
        self.health = health
        self.query_one(StatusHeader).health = health
        self.pending.merge(ChangeSet.all())
        self._flush()

    def changed(self, changes: ChangeSet) -> None:
        self.pending.merge(changes)

    def _flush(self) -> None:
        """Apply what changed since the last flush; nothing at all when nothing did."""
        if not self.pending or self.status_loading or self.jobs.loading:
            return
        changes = self.pending.take()
        if changes.status or changes.everything:
            self.load_status()
        table = self.jobs
        moved = table.apply_states(changes.job_states)
        table.apply_progress(changes.progress)
        touched = changes.states & set(TAB_SPECS[self.tab].states)
        if changes.everything or ((moved or touched) and not table.too_deep_to_reload):
            self.load_jobs(reset=not table.loaded)
        detail = self.detail
        if detail.display and detail.job is not None and (
            changes.everything or detail.job.id in changes.job_states
        ):
            self.load_detail(detail.job.id)

    def _tick_status(self) -> None:
        if not self.status_loading:
            self.load_status()

    def _lost(self, error: BaseException) -> None:
        self.post_message(ConnectionTrouble(describe(error)))

    @property
    def _quitting(self) -> bool:
        """The app is shutting down: its widgets may already be gone, so an answer that arrives now
        is dropped (a worker started by a late event is not among those cancelled at unmount)."""
        return not self.app.is_running or not self.is_attached

    @work(exclusive=True, group="status")
    async def load_status(self) -> None:
        self.status_loading = True
        try:
            status = await self.client.status()
        except ApiError as error:  # the daemon is there: say what failed, stay attached
            self.notify(f"could not read the status: {describe(error)}", severity="error")
            return
        except LOST_CONNECTION as error:
            self._lost(error)
            return
        finally:
            self.status_loading = False
        if not self._quitting:
            self._show_status(status)

    def _show_status(self, status: Status) -> None:
        previous, self.status = self.status, status
        self.query_one(StatusHeader).status = status
        self.batches.status = status
        self.jobs.batch_names = {b.id: b.name for b in status.batches}
        self._label_tabs(status)
        if previous is not None and previous.jobs != status.jobs:
            # Counts moved without an event reaching us (or before the stream opened): catch up.
            self.pending.states |= {s for s in ORDER if status.jobs.get(s) != previous.jobs.get(s)}

    @work(exclusive=True, group="jobs-load")
    async def load_jobs(self, reset: bool = False) -> None:
        """Re-read the rows on screen (or the first page after `reset`) into the table."""
        table = self.jobs
        query = table.job_query
        spec = TAB_SPECS[query.tab]
        table.loading = True
        try:
            # Not after a status of its own: the batch column's names arrive with the status that
            # `_flush` loads beside this page (`JobsTable.batch_names` fills them in), and the first
            # paint waits for one round trip instead of two.
            page = await self.client.jobs(
                states=spec.states, review=spec.review, batch_id=query.batch_id, text=query.text,
                cursor=None, limit=PAGE_SIZE if reset else table.reload_limit,
            )
        except ApiError as error:
            self.notify(f"could not load jobs: {describe(error)}", severity="error")
            return
        except LOST_CONNECTION as error:
            self._lost(error)
            return
        finally:
            _done_loading(table)
        if not self._quitting:
            table.page = JobsPage(query, tuple(page.items), page.next_cursor)

    @work(exclusive=True, group="jobs-load")
    async def load_more_jobs(self) -> None:
        table = self.jobs
        query = table.job_query
        if table.next_cursor is None:
            return
        spec = TAB_SPECS[query.tab]
        table.loading = True
        try:
            page = await self.client.jobs(
                states=spec.states, review=spec.review, batch_id=query.batch_id, text=query.text,
                cursor=table.next_cursor, limit=PAGE_SIZE,
            )
        except ApiError as error:
            self.notify(f"could not load more jobs: {describe(error)}", severity="error")
            return
        except LOST_CONNECTION as error:
            self._lost(error)
            return
        finally:
            _done_loading(table)
        if not self._quitting:
            table.page = JobsPage(query, tuple(page.items), page.next_cursor, append=True)

    @on(JobsTable.NeedMore)
    def _need_more(self) -> None:
        self.load_more_jobs()

    def _set_query(self, query: JobQuery) -> None:
        if self.jobs.set_query(query):
            self.load_jobs(reset=True)

    def _label_tabs(self, status: Status) -> None:
        counts = status.jobs
        for spec in TAB_SPECS.values():
            label = f"{spec.key} {spec.title}"
            if spec.tab is JobTab.FAILED:
                label += f" {counts.get(JobState.FAILED, 0)}"
                if counts.get(JobState.CANCELED, 0):
                    label += f"+{counts[JobState.CANCELED]}"
            elif spec.review is None:
                label += f" {sum(counts.get(s, 0) for s in spec.states)}"
            self.query_one(f"#{spec.tab.value}", Tab).label = label

    # -- navigation ---------------------------------------------------------------------------

    def action_show_tab(self, tab: str) -> None:
        self.query_one(Tabs).active = tab

    @on(Tabs.TabActivated)
    def _tab_activated(self, event: Tabs.TabActivated) -> None:
        if event.tab.id is None:
            return
        self._set_query(replace(self.jobs.job_query, tab=JobTab(event.tab.id)))
        self.refresh_bindings()

    @on(DataTable.RowHighlighted, "#batches")
    def _batch_highlighted(self) -> None:
        self._set_query(replace(self.jobs.job_query, batch_id=self.batches.scope))
        title = "Jobs"
        if self.batches.scope and self.batches.scope in self.batches.batches:
            title += f" of {self.batches.batches[self.batches.scope].name}"
        self.jobs.border_title = title

    @on(DataTable.RowSelected, "#batches")
    def _batch_selected(self) -> None:
        self.jobs.focus()

    @on(DataTable.RowSelected, "#jobs")
    def _job_selected(self) -> None:
        self.action_details()

    @on(DataTable.RowHighlighted, "#jobs")
    def _job_highlighted(self) -> None:
        detail = self.detail
        job = self.jobs.highlighted
        if detail.display and job is not None and (detail.job is None or detail.job.id != job.id):
            self.load_detail(job.id)

    def _show_detail(self, shown: bool) -> None:
        self.detail.display = shown
        self.set_class(shown, "detail-open")

    def action_details(self) -> None:
        job = self.jobs.highlighted
        if job is None:
            return
        self._show_detail(True)
        self.load_detail(job.id)

    @work(exclusive=True, group="detail")
    async def load_detail(self, job_id: int) -> None:
        detail = self.detail  # taken before the wait: the pane is gone if the app quits meanwhile
        try:
            job = await self.client.job(job_id)
        except ApiError as error:
            detail.note = f"could not load job {job_id}: {describe(error)}"
            return
        except LOST_CONNECTION as error:
            detail.note = f"could not load job {job_id}: {describe(error)}"
            self._lost(error)
            return
        if not self._quitting:
            detail.job = job

    def action_back(self) -> None:
        filter_input = self.query_one("#filter", Input)
        if filter_input.has_focus:
            filter_input.value = ""
            self._apply_filter("")
        elif self.detail.display:
            self._show_detail(False)
        elif self.jobs.marked:
            self.jobs.clear_marks()
        elif self.jobs.job_query.text:
            self._apply_filter("")

    def action_filter(self) -> None:
        filter_input = self.query_one("#filter", Input)
        filter_input.display = True
        filter_input.focus()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self._apply_filter(event.value)

    def _apply_filter(self, value: str) -> None:
        text = value.strip() or None
        filter_input = self.query_one("#filter", Input)
        filter_input.display = False
        self.query_one("#filter-label", Static).update(f"filter: “{text}”  (esc clears)" if text else "")
        self._set_query(replace(self.jobs.job_query, text=text))
        self.jobs.focus()

    def action_mark(self) -> None:
        self.jobs.toggle_mark()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "review":
            return self.tab is JobTab.REVIEW
        if action == "edit":
            return self.tab is JobTab.FAILED
        if action == "retry":
            return self.tab is not JobTab.REVIEW
        if action == "cancel":
            return self.tab in (JobTab.QUEUED, JobTab.RUNNING)
        return True

    # -- commands -----------------------------------------------------------------------------

    @work(group="commands")
    async def run_command(self, what: str, call: Callable[[], Awaitable[CommandResult]]) -> None:
        try:
            result = await call()
        except (ApiError, *LOST_CONNECTION) as error:
            self.notify(f"{what} failed: {describe(error)}", severity="error")
            return
        if self._quitting:
            return
        self.notify(f"{what}: {result.message}" if result.message else what)
        self.jobs.clear_marks()
        self.pending.merge(ChangeSet.all())

    def _targets(self) -> dict[int, JobState | None]:
        """The jobs a command acts on, with their states: the marked ones; else the one the detail
        pane shows (the user is looking at it, wherever the cursor went since); else the
        highlighted one."""
        table = self.jobs
        if table.marked:
            return {i: table.jobs[i].state if i in table.jobs else None for i in sorted(table.marked)}
        shown = self.detail.job if self.detail.display else None
        if shown is not None:
            current = table.jobs.get(shown.id)
            return {shown.id: current.state if current is not None else shown.state}
        job = table.highlighted
        return {job.id: job.state} if job is not None else {}

    def _confirmed(self, question: str, act: Callable[[], None]) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                act()

        self.app.push_screen(ConfirmScreen(question), answered)

    def action_retry(self) -> None:
        targets = self._targets()
        if not targets:
            self.notify("no job selected", severity="warning")
            return
        ids = list(targets)
        names = job_names(ids)

        def act() -> None:
            self.run_command(f"retry {names}", lambda: self.client.retry(RetryRequest(job_ids=ids)))

        if len(ids) > 1:
            self._confirmed(f"Retry {names}?", act)
        else:
            act()

    def action_retry_failed(self) -> None:
        batch_id = self.batches.scope
        if batch_id is None:
            request = RetryRequest(all_failed=True)
            failed = self.status.jobs.get(JobState.FAILED, 0) if self.status else 0
            scope = "of every batch"
        else:
            request = RetryRequest(failed_of_batch=batch_id)
            batch = self.batches.batches.get(batch_id)
            failed = batch.counts.get(JobState.FAILED, 0) if batch else 0
            scope = f"of batch {batch.name if batch else batch_id}"
        if not failed:
            self.notify(f"no failed jobs {scope}", severity="warning")
            return
        def act() -> None:
            self.run_command("retry failed", lambda: self.client.retry(request))

        self._confirmed(f"Retry all {failed} failed job(s) {scope}?", act)

    def action_cancel(self) -> None:
        targets = self._targets()
        if not targets:
            self.notify("no job selected", severity="warning")
            return
        ids = list(targets)
        names = job_names(ids)

        def act() -> None:
            self.run_command(f"cancel {names}", lambda: self.client.cancel(CancelRequest(job_ids=ids)))

        running = [i for i, state in targets.items() if state in IN_FLIGHT]
        if len(ids) > 1 or running:
            extra = f" ({job_names(running)} being executed: it may still be charged)" if running else ""
            self._confirmed(f"Cancel {names}?{extra}", act)
        else:
            act()

    def action_review(self, decision: str) -> None:
        if self.tab is not JobTab.REVIEW:
            return
        ids = list(self._targets())
        if not ids:
            self.notify("no job selected", severity="warning")
            return
        request = ReviewRequest(job_ids=ids, decision="approve" if decision == "approve" else "reject")
        self.run_command(f"{request.decision} {job_names(ids)}", lambda: self.client.review(request))

    def action_edit(self) -> None:
        targets = self._targets()
        job = self.jobs.jobs.get(next(iter(targets))) if len(targets) == 1 else self.jobs.highlighted
        if job is None:
            self.notify("no job selected", severity="warning")
            return
        if job.state not in RETRYABLE:
            self.notify(f"job {job.id} is {job.state}: only failed or canceled jobs can be edited",
                        severity="warning")
            return

        def requeue(prompt: str | None) -> None:
            if prompt:
                self.run_command(f"edit job {job.id}", lambda: self.client.edit(job.id, prompt))

        error = job.error.message if job.error else None
        self.app.push_screen(EditPromptScreen(job.id, job.prompt, error), requeue)

    def action_pause_batch(self) -> None:
        batch_id = self.batches.scope
        if batch_id is None and (job := self.jobs.highlighted) is not None:
            batch_id = job.batch_id
        if batch_id is None:
            self.notify("select a batch first (P pauses everything)", severity="warning")
            return
        batch = self.batches.batches.get(batch_id)
        request = PauseRequest(scope="batch", id=batch_id)
        if batch is not None and batch.paused:
            self.run_command("resume", lambda: self.client.resume(request))
        else:
            self.run_command("pause", lambda: self.client.pause(request))

    def action_pause_all(self) -> None:
        request = PauseRequest(scope="global")
        if self.status is not None and self.status.paused:
            self.run_command("resume all", lambda: self.client.resume(request))
        else:
            self.run_command("pause all", lambda: self.client.pause(request))


def _done_loading(table: JobsTable) -> None:
    """A lost connection swaps this screen for the offline one while a load is on the wire: the
    table may no longer be on any screen by the time the load ends (nothing left to draw then)."""
    with contextlib.suppress(NoScreen):
        table.loading = False
