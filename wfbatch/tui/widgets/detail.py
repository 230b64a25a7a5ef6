"""The detail pane: one job's prompt, parameters, every attempt, and its image (beside the picture
it started from, when it had one)."""

from __future__ import annotations

import json
from pathlib import Path

from rich.text import Text
from textual.containers import Horizontal, VerticalScroll
from textual.reactive import reactive
from textual.widgets import Static

from wfbatch.protocol import JobDetail, error_headline
from wfbatch.protocol.states import STYLE
from wfbatch.tui.formatting import clock
from wfbatch.tui.image_view import image_widget

OK_OUTCOMES = frozenset({"accepted", "finished", "pending", "done", "cached", "ok"})


def attempts_text(job: JobDetail) -> Text:
    """Every attempt, oldest first: when, what, the outcome, HTTP status, request id, message."""
    text = Text()
    if not job.attempts_history:
        return text.append("none yet", style="dim")
    for attempt in job.attempts_history:
        failed = attempt.outcome not in OK_OUTCOMES
        text.append(clock(attempt.at), style="dim")
        text.append(f"  {attempt.kind} → ")
        text.append(attempt.outcome, style="bold red" if failed else "green")
        if attempt.http_status is not None:
            text.append(f"  HTTP {attempt.http_status}")
        if attempt.request_id:
            text.append(f"  req {attempt.request_id}", style="cyan")
        if attempt.message:
            text.append(f"\n    {attempt.message}")
        text.append("\n")
    return text


def describe_job(job: JobDetail) -> Text:
    head = Text()
    head.append(f"job {job.id}", style="bold")
    head.append(f"  {job.state}", style=f"bold {STYLE.get(job.state, '')}".strip())
    head.append(f"  review {job.review}  attempts {job.attempts}\n", style="dim")
    head.append(f"batch {job.batch_id}  line {job.line}  provider {job.provider}\n", style="dim")
    head.append("prompt\n", style="bold")
    head.append(job.prompt + "\n")
    if job.negative_prompt:
        head.append("negative\n", style="bold")
        head.append(job.negative_prompt + "\n")
    head.append("params\n", style="bold")
    head.append(f"{job.width}×{job.height}  seed {job.seed}  variant {job.variant}  {job.format}")
    if job.model:
        head.append(f"  model {job.model}")
    if job.params:
        head.append("\n" + json.dumps(job.params, ensure_ascii=False, sort_keys=True))
    if job.tags:
        head.append(f"\ntags {', '.join(job.tags)}")
    if job.error is not None:
        head.append("\nlast error  ", style="bold red")
        headline = error_headline(job.error.http_status)
        if headline == "execution failed" and job.error.http_status is not None:
            headline += f" (HTTP {job.error.http_status})"
        head.append(f"{headline}  request id {job.error.request_id or '—'}\n{job.error.message}")
    if job.next_attempt_at is not None:
        head.append(f"\nnext attempt at {clock(job.next_attempt_at)}", style="yellow")
    if job.file_path:
        head.append(f"\nfile {job.file_path}", style="dim")
    for item in job.inputs:
        head.append(f"\ninput {item.role}  ", style="bold")
        head.append(f"{item.source}  sha256 {item.sha256[:12]}", style="dim")
    if job.delivery is not None:
        delivery = job.delivery
        held = delivery.state == "held"
        head.append("\ndelivered  " if delivery.state == "done" else f"\ndelivery {delivery.state}  ",
                    style="bold yellow" if held else "bold")
        head.append(delivery.url or "not uploaded yet")
        if delivery.error:
            head.append(f"\n{delivery.error}", style="yellow" if held else "dim")
    return head


class DetailPane(VerticalScroll):
    """Hidden until `enter`; then follows the highlighted job until `escape`. The screen sets `job`
    (or `note`, when the job could not be loaded); the pane redraws from them."""

    job: reactive[JobDetail | None] = reactive(None, always_update=True, init=False)
    note: reactive[str | None] = reactive(None, init=False)

    def __init__(self, *, id: str | None = None, graphics: bool = True) -> None:
        super().__init__(id=id)
        self.graphics = graphics
        self._picture_of: str | None = None
        self.border_title = "Job"

    async def watch_job(self, job: JobDetail | None) -> None:
        if job is None:
            return
        self.border_title = f"Job {job.id}"
        if not self.query("#detail-attempts"):
            await self.remove_children()
            await self.mount(Static(id="detail-text"), Static(id="detail-attempts"))
        self.query_one("#detail-text", Static).update(describe_job(job))
        attempts = Text("attempts\n", style="bold").append_text(attempts_text(job))
        self.query_one("#detail-attempts", Static).update(attempts)
        shown = self._picture_key(job)
        if self._picture_of == shown and self.query(".picture, .image-missing, .pictures"):
            return
        self._picture_of = shown
        await self.query(".pictures, .picture, .image-missing").remove()
        first_input = next((item.path for item in job.inputs if item.path and item.role == "image"), None)
        if job.file_path and first_input:
            # The picture the job started from beside what it made: was the edit what was asked?
            pair = Horizontal(
                image_widget(Path(first_input), graphics=self.graphics),
                image_widget(Path(job.file_path), graphics=self.graphics),
                classes="pictures",
            )
            await self.mount(pair, before="#detail-attempts")
        elif job.file_path or first_input:
            # The picture sits between the description and the (possibly long) attempt list.
            picture = image_widget(Path(job.file_path or first_input or ""), graphics=self.graphics)
            await self.mount(picture, before="#detail-attempts")

    @staticmethod
    def _picture_key(job: JobDetail) -> str | None:
        inputs = ",".join(item.path or "" for item in job.inputs)
        return f"{job.file_path}|{inputs}" if job.file_path or inputs.strip(",") else None

    async def watch_note(self, note: str | None) -> None:
        if note is None:
            return
        self.set_reactive(DetailPane.job, None)
        self._picture_of = None
        await self.remove_children()
        await self.mount(Static(note, id="detail-text"))
