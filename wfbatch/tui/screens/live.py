"""The main screen's data: the daemon client, and every worker that reads through it.

Live updates arrive as `ChangeSet`s (merged in the message queue) and are applied by a 4 Hz
timer that does nothing unless something changed; `/v1/status` is also re-read every couple of
seconds, since the limiter gauges move without events. The answers reach the widgets through
their reactive attributes (`header.status`, `batches.status`, `jobs.page`, `detail.job`).
"""

from __future__ import annotations

import contextlib

from textual import on, work
from textual.dom import NoScreen
from textual.screen import Screen
from textual.widgets import Tab

from wfbatch.client import ApiError, DaemonClient
from wfbatch.protocol import Health, JobState, Status
from wfbatch.protocol.states import ORDER
from wfbatch.tui.changes import ChangeSet
from wfbatch.tui.connection import LOST_CONNECTION, describe
from wfbatch.tui.messages import ConnectionTrouble
from wfbatch.tui.tabs import TAB_SPECS, JobTab
from wfbatch.tui.widgets.batches import BatchesPanel
from wfbatch.tui.widgets.detail import DetailPane
from wfbatch.tui.widgets.header import StatusHeader
from wfbatch.tui.widgets.holds import HoldsLine
from wfbatch.tui.widgets.jobs_table import PAGE_SIZE, JobQuery, JobsPage, JobsTable

REFRESH_INTERVAL = 0.25


class LiveScreen(Screen[None]):
    """Owns the daemon client and the workers that load what is shown; `MainScreen` lays the
    widgets out and binds the keys, `CommandScreen` sends the commands."""

    def __init__(self, client: DaemonClient, *, status_interval: float = 2.0, graphics: bool = True) -> None:
        super().__init__()
        self.client = client
        self.status_interval = status_interval
        self.graphics = graphics
        self.health: Health | None = None
        self.status: Status | None = None
        self.pending = ChangeSet()
        self.status_loading = False

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
        if not self.pending or self.status_loading or self.jobs.fetching:
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
        self.query_one(HoldsLine).show(status, self.batches.scope)
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
        table.fetching = True
        # The indicator only while the table has nothing of this query to show: over rows being
        # re-read after an event it flashed on every change.
        table.loading = not table.loaded
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
        table.fetching = True
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
            else:
                label += f" {status.review_pending}"
            self.query_one(f"#{spec.tab.value}", Tab).label = label

    # -- the detail pane ----------------------------------------------------------------------

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


def _done_loading(table: JobsTable) -> None:
    """A lost connection swaps this screen for the offline one while a load is on the wire: the
    table may no longer be on any screen by the time the load ends (nothing left to draw then)."""
    table.fetching = False
    with contextlib.suppress(NoScreen):
        table.loading = False
