"""The batches panel: one row per batch with a done/failed/total bar, an ETA, and its state —
"held: budget" (or credits, pause, ...) instead of an ETA when nothing of it can move, "scheduled
02:00" before its `not_before`, "running 50%" when it shares its provider with other batches.

The highlighted row is the scope of the jobs table below it (and of `p` and `R`); the first
row, "all batches", lifts the scope. The screen sets `status`; the rows follow, keeping the
cursor on the same batch. Columns fit the width: the name takes what the others leave.
"""

from __future__ import annotations

from rich.text import Text
from textual.events import Resize
from textual.reactive import reactive
from textual.widgets import DataTable

from wfbatch.protocol import BatchSummary, Hold, JobState, Status
from wfbatch.protocol.states import OPEN, STYLE
from wfbatch.tui.formatting import clock_time, duration, finished_counts, progress_bar

ALL_KEY = "*"
CHROME = 2
CELL_PADDING = 2


def _state_text(batch: BatchSummary, hold: Hold | None) -> Text:
    open_jobs = sum(batch.counts.get(s, 0) for s in OPEN)
    if batch.paused:
        return Text("paused", style="bold yellow")
    # Its own time first, as `status` says it: "held: window" hid when it was set to start; a hold
    # that outlasts that time is on the line under the batches either way.
    if open_jobs and batch.not_before is not None:
        return Text(f"scheduled {clock_time(batch.not_before)}", style="cyan")
    if open_jobs and hold is not None:
        return Text(f"held: {hold.kind.replace('_', ' ')}", style="bold yellow")
    remote = batch.remote_progress()
    if remote is not None:
        return Text(remote, style="cyan")  # the remote batch's request_counts
    if open_jobs:
        # Its share of the provider, when it shares it (or waits behind a higher priority).
        shared = f" {batch.share:.0%}" if batch.share is not None and batch.share < 1 else ""
        return Text(f"running{shared}", style=STYLE[JobState.RUNNING])
    if batch.counts.get(JobState.FAILED, 0):
        return Text("has failures", style="red")
    if canceled := batch.counts.get(JobState.CANCELED, 0):
        return Text(f"{canceled} canceled", style="red")
    return Text("finished", style="green")


def _layout(width: int) -> list[tuple[str, str, int]]:
    """(key, label, width) of the columns at this panel width; the name gets the rest."""
    bar = 24 if width >= 120 else 10
    columns = [("provider", "provider", 10)] if width >= 110 else []
    columns += [("bar", "progress", bar), ("counts", "done/failed/all", 15), ("eta", "ETA", 7),
                ("state", "state", 16)]
    fixed = sum(w for _, _, w in columns) + CELL_PADDING * (len(columns) + 1) + CHROME
    return [("name", "batch", max(12, width - fixed)), *columns]


class BatchesPanel(DataTable[str | Text]):
    status: reactive[Status | None] = reactive(None, always_update=True, init=False)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.batches: dict[str, BatchSummary] = {}
        self._columns: list[tuple[str, str, int]] = []

    def on_mount(self) -> None:
        self.border_title = "Batches"
        self._set_columns()

    def on_resize(self, event: Resize) -> None:
        self._set_columns()

    def _set_columns(self) -> None:
        layout = _layout(self.size.width or 120)
        if layout == self._columns:
            return
        self._columns = layout
        keep = self.scope
        self.clear(columns=True)
        for key, label, width in layout:
            self.add_column(label, key=key, width=width)
        if self.status is not None:
            self._fill(self.status, keep)

    @property
    def scope(self) -> str | None:
        """The highlighted batch's id, or None for all batches."""
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return None if key in (None, ALL_KEY) else key

    def watch_status(self, status: Status | None) -> None:
        if status is None:
            return
        self.batches = {b.id: b for b in status.batches}
        rows = self._rows(status)
        keys = [row.key.value for row in self.ordered_rows]
        if keys == list(rows):
            for key, cells in rows.items():
                for (column, _, _), value in zip(self._columns, cells, strict=True):
                    self.update_cell(key, column, value)
            return
        self._fill(status, self.scope)

    def _fill(self, status: Status, keep: str | None) -> None:
        self.batches = {b.id: b for b in status.batches}
        self.clear()
        for key, cells in self._rows(status).items():
            self.add_row(*cells, key=key)
        if keep is not None and keep in self.rows:
            self.move_cursor(row=self.get_row_index(keep), animate=False)

    def _rows(self, status: Status) -> dict[str, list[str | Text]]:
        rows = {ALL_KEY: self._all_row(status)}
        for batch in status.batches:
            rows[batch.id] = self._row(batch, status.hold_of(batch))
        return rows

    def _pick(self, values: dict[str, str | Text]) -> list[str | Text]:
        # As plain text, not markup: a batch named "shoes [v2]" showed as "shoes".
        picked = (values[key] for key, _, _ in self._columns)
        return [Text(value) if isinstance(value, str) else value for value in picked]

    def _bar_width(self) -> int:
        return next((w for key, _, w in self._columns if key == "bar"), 10)

    def _row(self, batch: BatchSummary, hold: Hold | None) -> list[str | Text]:
        done = batch.counts.get(JobState.DONE, 0)
        failed = batch.counts.get(JobState.FAILED, 0)
        canceled = batch.counts.get(JobState.CANCELED, 0)
        open_jobs = sum(batch.counts.get(s, 0) for s in OPEN)
        eta = duration(batch.eta_seconds) if open_jobs and batch.eta_seconds is not None else ""
        return self._pick({
            "name": batch.name, "provider": batch.provider,
            "bar": progress_bar(done, failed, batch.total, self._bar_width(), canceled),
            "counts": finished_counts(done, failed, canceled, batch.total), "eta": eta,
            "state": _state_text(batch, hold),
        })

    def _all_row(self, status: Status) -> list[str | Text]:
        done = status.jobs.get(JobState.DONE, 0)
        failed = status.jobs.get(JobState.FAILED, 0)
        canceled = status.jobs.get(JobState.CANCELED, 0)
        total = sum(status.jobs.values())
        open_jobs = sum(status.jobs.get(s, 0) for s in OPEN)
        eta = duration(status.eta_seconds) if open_jobs and status.eta_seconds is not None else ""
        if status.paused:
            state = Text("paused", style="bold yellow")
        elif open_jobs and status.eta_seconds is None and status.holds:
            state = Text(f"held: {status.holds[0].kind.replace('_', ' ')}", style="bold yellow")
        else:
            state = Text("")
        return self._pick({
            "name": Text("all batches", style="bold"), "provider": "",
            "bar": progress_bar(done, failed, total, self._bar_width(), canceled),
            "counts": finished_counts(done, failed, canceled, total), "eta": eta, "state": state,
        })
