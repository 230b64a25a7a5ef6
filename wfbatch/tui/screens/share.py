"""The `w` modal: a batch's priority and weight (how it shares its provider with other batches);
enter sends what changed, escape leaves both alone."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from wfbatch.protocol.models import MAX_BATCH_PRIORITY, MAX_BATCH_WEIGHT


@dataclass(frozen=True)
class Share:
    priority: int
    weight: float


def parse_share(priority: str, weight: str) -> Share | str:
    """The two fields as typed, or what is wrong with them (one line)."""
    try:
        wanted_priority = int(priority.strip())
    except ValueError:
        return f"priority is a whole number, not {priority.strip()[:20]!r}"
    if abs(wanted_priority) > MAX_BATCH_PRIORITY:
        return f"priority is between -{MAX_BATCH_PRIORITY:,} and {MAX_BATCH_PRIORITY:,}"
    try:
        wanted_weight = float(weight.strip())
    except ValueError:
        wanted_weight = math.nan
    if not (math.isfinite(wanted_weight) and 0 < wanted_weight <= MAX_BATCH_WEIGHT):
        return f"weight is a number more than 0 and at most {MAX_BATCH_WEIGHT:g}"
    return Share(wanted_priority, wanted_weight)


class ShareScreen(ModalScreen[Share | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, name: str, current: Share) -> None:
        super().__init__()
        self.batch_name = name
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="edit-box"):
            yield Label(
                f"Batch {self.batch_name}: a higher priority starts first; batches of one priority"
                " share their provider by weight. Enter applies, escape cancels.",
                markup=False,  # the batch's name as written: "shoes [v2]" lost its "[v2]"
            )
            yield Label("", id="edit-error")
            yield Label("priority")
            yield Input(value=str(self.current.priority), id="share-priority")
            yield Label("weight")
            yield Input(value=f"{self.current.weight:g}", id="share-weight")

    def on_mount(self) -> None:
        self.query_one("#edit-error", Label).display = False

    @on(Input.Submitted)
    def _submit(self) -> None:
        found = parse_share(
            self.query_one("#share-priority", Input).value, self.query_one("#share-weight", Input).value
        )
        if isinstance(found, str):
            error = self.query_one("#edit-error", Label)
            error.update(found)
            error.display = True
            return
        self.dismiss(found if found != self.current else None)

    def action_cancel(self) -> None:
        self.dismiss(None)
