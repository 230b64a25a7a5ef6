"""The batches panel: one row per batch with a done/failed/total bar and an ETA.

The highlighted row is the scope of the jobs table below it (and of `p` and `R`); the first
row, "all batches", lifts the scope.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from wfbatch.protocol import BatchSummary, Status
from wfbatch.tui.formatting import duration, progress_bar

ALL_KEY = "*"
OPEN_STATES = ("queued", "retrying", "submitting", "running")


def _state_text(batch: BatchSummary) -> Text:
    open_jobs = sum(batch.counts.get(s, 0) for s in OPEN_STATES)
    if batch.paused:
        return Text("paused", style="bold yellow")
    remote = batch.remote_progress()
    if remote is not None:
        return Text(remote, style="cyan")  # the remote batch's request_counts
    if open_jobs:
        return Text("running", style="cyan")
    if batch.counts.get("failed", 0):
        return Text("has failures", style="red")
    return Text("finished", style="green")


class BatchesPanel(DataTable[str | Text]):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.batches: dict[str, BatchSummary] = {}

    def on_mount(self) -> None:
        self.add_column("batch", key="name", width=26)
        self.add_column("provider", key="provider", width=10)
        self.add_column("progress", key="bar", width=24)
        self.add_column("done/failed/total", key="counts", width=17)
        self.add_column("ETA", key="eta", width=7)
        self.add_column("state", key="state", width=14)
        self.border_title = "Batches"

    @property
    def scope(self) -> str | None:
        """The highlighted batch's id, or None for all batches."""
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return None if key in (None, ALL_KEY) else key

    def show(self, status: Status) -> None:
        rows: dict[str, list[str | Text]] = {ALL_KEY: self._all_row(status)}
        for batch in status.batches:
            rows[batch.id] = self._row(batch)
        self.batches = {b.id: b for b in status.batches}
        keys = [row.key.value for row in self.ordered_rows]
        if keys == list(rows):
            for key, cells in rows.items():
                for column, value in zip(self.ordered_columns, cells, strict=True):
                    self.update_cell(key, column.key, value)
            return
        keep = self.scope
        self.clear()
        for key, cells in rows.items():
            self.add_row(*cells, key=key)
        if keep in rows:
            self.move_cursor(row=self.get_row_index(keep), animate=False)

    @staticmethod
    def _row(batch: BatchSummary) -> list[str | Text]:
        done = batch.counts.get("done", 0)
        failed = batch.counts.get("failed", 0)
        counts = Text()
        counts.append(str(done), style="green")
        counts.append("/")
        counts.append(str(failed), style="red" if failed else "")
        counts.append(f"/{batch.total}")
        open_jobs = sum(batch.counts.get(s, 0) for s in OPEN_STATES)
        eta = duration(batch.eta_seconds) if open_jobs else ""
        return [batch.name, batch.provider, progress_bar(done, failed, batch.total, 24), counts, eta,
                _state_text(batch)]

    @staticmethod
    def _all_row(status: Status) -> list[str | Text]:
        done = status.jobs.get("done", 0)
        failed = status.jobs.get("failed", 0)
        total = sum(status.jobs.values())
        counts = Text(f"{done}/{failed}/{total}")
        etas = [b.eta_seconds for b in status.batches if b.eta_seconds is not None]
        eta = duration(max(etas)) if etas and any(status.jobs.get(s, 0) for s in OPEN_STATES) else ""
        state = Text("paused", style="bold yellow") if status.paused else Text("")
        bar = progress_bar(done, failed, total, 24)
        return [Text("all batches", style="bold"), "", bar, counts, eta, state]
