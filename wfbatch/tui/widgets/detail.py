"""The detail pane: one job's prompt, parameters, every attempt, and its image."""

from __future__ import annotations

import json
from pathlib import Path

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from wfbatch.protocol import JobDetail
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
    head.append(f"  {job.state}", style="bold red" if job.state == "failed" else "bold")
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
        status = job.error.http_status if job.error.http_status is not None else "—"
        head.append(f"HTTP {status}  request id {job.error.request_id or '—'}\n{job.error.message}")
    if job.next_attempt_at is not None:
        head.append(f"\nnext attempt at {clock(job.next_attempt_at)}", style="yellow")
    if job.file_path:
        head.append(f"\nfile {job.file_path}", style="dim")
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
    """Hidden until `enter`; then follows the highlighted job until `escape`."""

    def __init__(self, *, id: str | None = None, graphics: bool = True) -> None:
        super().__init__(id=id)
        self.graphics = graphics
        self.job: JobDetail | None = None
        self.border_title = "Job"

    async def show_job(self, job: JobDetail) -> None:
        same_picture = self.job is not None and self.job.file_path == job.file_path
        self.job = job
        self.border_title = f"Job {job.id}"
        if not self.query("#detail-text"):
            await self.remove_children()
            await self.mount(Static(id="detail-text"), Static(id="detail-attempts"))
        self.query_one("#detail-text", Static).update(describe_job(job))
        attempts = Text("attempts\n", style="bold").append_text(attempts_text(job))
        self.query_one("#detail-attempts", Static).update(attempts)
        if same_picture and self.query(".picture, .image-missing"):
            return
        await self.query(".picture, .image-missing").remove()
        if job.file_path:
            # The picture sits between the description and the (possibly long) attempt list.
            picture = image_widget(Path(job.file_path), graphics=self.graphics)
            await self.mount(picture, before="#detail-attempts")

    async def show_message(self, message: str) -> None:
        self.job = None
        await self.remove_children()
        await self.mount(Static(message, id="detail-text"))
