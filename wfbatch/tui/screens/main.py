"""The main screen: header, batches, job tabs with their table, the detail pane, and the keys.

What it shows is loaded by `LiveScreen` (screens/live.py), what it sends by `CommandScreen`
(screens/commands.py); this module lays the widgets out, binds the keys and moves between tabs,
batches, the filter and the detail pane.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.events import Key, Resize
from textual.widgets import DataTable, Footer, Input, Static, Tab, Tabs

from wfbatch.tui.screens.commands import CommandScreen
from wfbatch.tui.screens.live import REFRESH_INTERVAL
from wfbatch.tui.tabs import TAB_SPECS, JobTab
from wfbatch.tui.widgets.batches import BatchesPanel
from wfbatch.tui.widgets.detail import DetailPane
from wfbatch.tui.widgets.header import StatusHeader
from wfbatch.tui.widgets.holds import HoldsLine
from wfbatch.tui.widgets.jobs_table import JobsTable

NARROW = 110
"""Below this width the detail pane takes the whole width while it is open."""
SHORT = 32
"""Below this height the batches panel shrinks to leave the jobs table its rows."""


class MainScreen(CommandScreen):
    """The screen a connected app shows (see the module)."""

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
        Binding("w", "share", "share", show=False),
        Binding("space", "mark", "select", show=False),
        Binding("slash", "filter", "filter"),
        Binding("enter", "details", "details"),
        Binding("escape", "back", "back", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="status")
        yield BatchesPanel(id="batches")
        yield HoldsLine("", id="holds")
        with Horizontal(id="tabs-row"):
            yield Tabs(*(Tab(f"{s.key} {s.title}", id=s.tab.value) for s in TAB_SPECS.values()), id="tabs")
            yield Static("", id="filter-label", markup=False)  # shows the filter as typed
        yield Input(placeholder="filter prompts by text, enter applies, escape clears", id="filter")
        with Horizontal(id="work"):
            yield JobsTable(id="jobs")
            yield DetailPane(id="detail", graphics=self.graphics)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(Tabs).can_focus = False
        self.query_one("#filter", Input).display = False
        self.query_one(DetailPane).display = False
        self.query_one(HoldsLine).display = False
        self.query_one(StatusHeader).socket = str(self.client.socket_path)
        self.jobs.border_title = "Jobs"
        self.jobs.focus()
        self.set_interval(REFRESH_INTERVAL, self._flush)
        self.set_interval(self.status_interval, self._tick_status)
        self.set_interval(1.0, self.jobs.tick_running_for)

    def on_resize(self, event: Resize) -> None:
        self.set_class(event.size.width < NARROW, "narrow")
        self.set_class(event.size.height < SHORT, "short")

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
        self.query_one(HoldsLine).show(self.status, self.batches.scope)

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

    def why_not(self, action: str) -> str | None:
        """Why a command key does nothing in this tab (and where it works); None where it works."""
        tab = self.tab
        if action == "review" and tab is not JobTab.REVIEW:
            return "approve (a) and reject (x) work on the Review tab: press 5"
        if action == "edit" and tab is not JobTab.FAILED:
            return "edit works on failed or canceled jobs: press 3 for the Failed tab"
        if action == "retry" and tab is JobTab.REVIEW:
            return "retry works on the other tabs; here a (approve) or x (reject)"
        if action == "cancel" and tab not in (JobTab.QUEUED, JobTab.RUNNING):
            return "these jobs are finished: cancel works on the Queued (1) and Running (2) tabs"
        return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.why_not(action) is None

    def on_key(self, event: Key) -> None:
        """A key bound to a command this tab has no use for: say why instead of doing nothing (the
        binding is off here, so the key arrives as a plain key event)."""
        if isinstance(self.focused, Input):
            return
        for binding in self.BINDINGS:
            if not isinstance(binding, Binding) or event.key not in binding.key.split(","):
                continue
            why = self.why_not(binding.action.split("(", 1)[0])
            if why is not None:
                event.stop()
                self.notify(why, severity="warning")
                return
