"""The holds line under the batches: what keeps the work in view from starting, with its figures
and what lifts it — the same `Hold`s, reasons and commands `wfbatch status` prints.

The batches panel says "held: budget" in a 16-cell column; this line says "budget reached: 10 of
10 credits spent or reserved" and "`wfbatch budget 3f2a… <credits>`". It shows nothing when
nothing holds the work in view (the highlighted batch, or every batch).
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from wfbatch.protocol import Hold, Status
from wfbatch.protocol.states import OPEN


def _what(hold: Hold, names: dict[str, str]) -> str:
    if hold.scope == "everything":
        return "everything"
    if hold.scope == "provider":
        return f"provider {hold.target}"
    return f"batch {names.get(hold.target or '', hold.target)}"


def holds_in_view(status: Status, scope: str | None) -> list[Hold]:
    """The holds on the highlighted batch (scope: its id) while it has work left, or (scope None:
    all batches) every hold but those on batches with no work left."""
    open_batches = {b.id: b for b in status.batches if any(b.counts.get(s, 0) for s in OPEN)}
    if scope is None:
        # A batch's own hold outlives its work (a budget reached, the rest canceled): not news.
        return [h for h in status.holds if h.scope != "batch" or h.target in open_batches]
    batch = open_batches.get(scope)
    hold = status.hold_of(batch) if batch is not None else None
    return [hold] if hold is not None else []


def holds_text(holds: list[Hold], names: dict[str, str]) -> Text:
    """`⏸ batch portraits: budget reached: … · to lift: `wfbatch budget …`` (+ how many more)."""
    if not holds:
        return Text("")
    first = holds[0]
    text = Text.assemble(
        ("⏸ ", "bold yellow"), (f"{_what(first, names)}: ", "bold"), (first.reason, "yellow"),
        ("  to lift: ", "dim"), (first.lift, "bold"),
    )
    if len(holds) > 1:
        text.append(f"  (+{len(holds) - 1} more in `wfbatch status`)", style="dim")
    return text


class HoldsLine(Static):
    """Shows `holds_text` for the status and scope the screen gives it; hidden when empty."""

    def show(self, status: Status | None, scope: str | None) -> None:
        holds = holds_in_view(status, scope) if status is not None else []
        self.display = bool(holds)
        if status is not None:
            self.update(holds_text(holds, {b.id: b.name for b in status.batches}))
