"""The main screen: header, batches, job tabs with their table, the detail pane, and the keys.

Live updates arrive as `ChangeSet`s (merged in the message queue) and are applied by a 4 Hz
timer that does nothing unless something changed; `/v1/status` is also re-read every couple of
seconds, since the limiter gauges move without events.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static, Tab, Tabs

from wfbatch.protocol import (
    CancelRequest,
    CommandResult,
    Health,
    PauseRequest,
    RetryRequest,
    ReviewRequest,
    Status,
)
from wfbatch.tui.changes import ChangeSet
from wfbatch.tui.connection import CONNECTION_ERRORS, describe
from wfbatch.tui.daemon_api import DaemonApi
from wfbatch.tui.messages import ConnectionTrouble
from wfbatch.tui.screens.edit import EditPromptScreen
from wfbatch.tui.tabs import TAB_SPECS, JobTab
from wfbatch.tui.widgets.batches import BatchesPanel
from wfbatch.tui.widgets.detail import DetailPane
from wfbatch.tui.widgets.header import StatusHeader
from wfbatch.tui.widgets.jobs_table import JobsTable

REFRESH_INTERVAL = 0.25
EDITABLE_STATES = frozenset({"failed", "canceled"})


class MainScreen(Screen[None]):
    AUTO_FOCUS = "#jobs"
    BINDINGS: ClassVar[list[BindingType]] = [
        *(Binding(s.key, f"show_tab('{s.tab.value}')", s.title, show=False) for s in TAB_SPECS.values()),
        Binding("r", "retry", "retry"),
        Binding("R", "retry_failed", "retry failed"),
        Binding("c", "cancel", "cancel"),
        Binding("e", "edit", "edit"),
        Binding("a", "review('approve')", "approve"),
        Binding("x", "review('reject')", "reject"),
        Binding("p", "pause_batch", "pause"),
        Binding("P", "pause_all", "pause all"),
        Binding("space", "mark", "select"),
        Binding("slash", "filter", "filter"),
        Binding("enter", "details", "details"),
        Binding("escape", "back", "back", show=False),
    ]

    def __init__(self, client: DaemonApi, *, status_interval: float = 2.0, graphics: bool = True) -> None:
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
            yield JobsTable(self.client, id="jobs")
            yield DetailPane(id="detail", graphics=self.graphics)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(Tabs).can_focus = False
        self.query_one("#filter", Input).display = False
        self.query_one(DetailPane).display = False
        self.jobs.border_title = "Jobs"
        self.jobs.focus()
        self.set_interval(REFRESH_INTERVAL, self._flush)
        self.set_interval(self.status_interval, self._tick_status)

    @property
    def jobs(self) -> JobsTable:
        return self.query_one(JobsTable)

    @property
    def batches(self) -> BatchesPanel:
        return self.query_one(BatchesPanel)

    @property
    def tab(self) -> JobTab:
        return self.jobs.job_query.tab

    # -- live data ----------------------------------------------------------------------------

    def attached(self, health: Health) -> None:
        """The daemon (re)appeared: reload everything."""
        self.health = health
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
        touched = changes.states & set(TAB_SPECS[self.tab].states)
        if changes.everything or ((moved or touched) and not table.too_deep_to_reload):
            table.reload(reset=not table.loaded)
        detail = self.query_one(DetailPane)
        if detail.display and detail.job is not None and (
            changes.everything or detail.job.id in changes.job_states
        ):
            self.load_detail(detail.job.id)

    def _tick_status(self) -> None:
        if not self.status_loading:
            self.load_status()

    @work(exclusive=True, group="status")
    async def load_status(self) -> None:
        self.status_loading = True
        try:
            status = await self.client.status()
        except CONNECTION_ERRORS as error:
            self.post_message(ConnectionTrouble(describe(error)))
            return
        finally:
            self.status_loading = False
        previous, self.status = self.status, status
        self.query_one(StatusHeader).show(self.health, status, str(self.client.socket_path))
        self.batches.show(status)
        self.jobs.batch_names = {b.id: b.name for b in status.batches}
        self._label_tabs(status)
        if previous is not None and previous.jobs != status.jobs:
            # Counts moved without an event reaching us (or before the stream opened): catch up.
            self.pending.states |= {s for s in status.jobs if status.jobs[s] != previous.jobs.get(s)}

    def _label_tabs(self, status: Status) -> None:
        counts = status.jobs
        for spec in TAB_SPECS.values():
            label = f"{spec.key} {spec.title}"
            if spec.tab is JobTab.FAILED:
                label += f" {counts.get('failed', 0)}"
                if counts.get("canceled", 0):
                    label += f"+{counts['canceled']} canceled"
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
        self.jobs.set_query(replace(self.jobs.job_query, tab=JobTab(event.tab.id)))
        self.refresh_bindings()

    @on(DataTable.RowHighlighted, "#batches")
    def _batch_highlighted(self) -> None:
        self.jobs.set_query(replace(self.jobs.job_query, batch_id=self.batches.scope))
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
        detail = self.query_one(DetailPane)
        job = self.jobs.highlighted
        if detail.display and job is not None and (detail.job is None or detail.job.id != job.id):
            self.load_detail(job.id)

    def action_details(self) -> None:
        job = self.jobs.highlighted
        if job is None:
            return
        self.query_one(DetailPane).display = True
        self.load_detail(job.id)

    @work(exclusive=True, group="detail")
    async def load_detail(self, job_id: int) -> None:
        pane = self.query_one(DetailPane)
        try:
            job = await self.client.job(job_id)
        except CONNECTION_ERRORS as error:
            await pane.show_message(f"could not load job {job_id}: {describe(error)}")
            return
        await pane.show_job(job)

    def action_back(self) -> None:
        filter_input = self.query_one("#filter", Input)
        if filter_input.has_focus:
            filter_input.value = ""
            self._apply_filter("")
        elif self.query_one(DetailPane).display:
            self.query_one(DetailPane).display = False
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
        self.jobs.set_query(replace(self.jobs.job_query, text=text))
        self.jobs.focus()

    def action_mark(self) -> None:
        self.jobs.toggle_mark()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "review":
            return self.tab is JobTab.REVIEW
        if action == "edit":
            return self.tab is JobTab.FAILED
        return True

    # -- commands -----------------------------------------------------------------------------

    @work(group="commands")
    async def run_command(self, what: str, call: Callable[[], Awaitable[CommandResult]]) -> None:
        try:
            result = await call()
        except CONNECTION_ERRORS as error:
            self.notify(f"{what} failed: {describe(error)}", severity="error")
            return
        self.notify(result.message or f"{what}: {len(result.job_ids)} job(s)")
        self.jobs.clear_marks()
        self.pending.merge(ChangeSet.all())

    def _selected_or_warn(self) -> list[int]:
        ids = self.jobs.selected_ids()
        if not ids:
            self.notify("no job selected", severity="warning")
        return ids

    def action_retry(self) -> None:
        if ids := self._selected_or_warn():
            self.run_command("retry", lambda: self.client.retry(RetryRequest(job_ids=ids)))

    def action_retry_failed(self) -> None:
        batch_id = self.batches.scope
        if batch_id is None:
            request = RetryRequest(all_failed=True)
        else:
            request = RetryRequest(failed_of_batch=batch_id)
        self.run_command("retry failed", lambda: self.client.retry(request))

    def action_cancel(self) -> None:
        if ids := self._selected_or_warn():
            self.run_command("cancel", lambda: self.client.cancel(CancelRequest(job_ids=ids)))

    def action_review(self, decision: str) -> None:
        if self.tab is not JobTab.REVIEW:
            return
        request = ReviewRequest(job_ids=[], decision="approve" if decision == "approve" else "reject")
        if ids := self._selected_or_warn():
            request.job_ids = ids
            self.run_command(request.decision, lambda: self.client.review(request))

    def action_edit(self) -> None:
        job = self.jobs.highlighted
        if job is None:
            self.notify("no job selected", severity="warning")
            return
        if job.state not in EDITABLE_STATES:
            self.notify(f"job {job.id} is {job.state}: only failed or canceled jobs can be edited",
                        severity="warning")
            return

        def requeue(prompt: str | None) -> None:
            if prompt:
                self.run_command("edit", lambda: self.client.edit(job.id, prompt))

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
