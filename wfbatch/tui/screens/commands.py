"""The main screen's commands: retry, cancel, edit, review, pause, a batch's share. Each acts on the
jobs the user means (`_targets`), and asks first when it touches several jobs or one being executed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from textual import work

from wfbatch.client import ApiError
from wfbatch.protocol import (
    CancelRequest,
    CommandResult,
    JobState,
    PauseRequest,
    RetryRequest,
    ReviewRequest,
)
from wfbatch.protocol.states import IN_FLIGHT, RETRYABLE
from wfbatch.tui.changes import ChangeSet
from wfbatch.tui.connection import LOST_CONNECTION, describe
from wfbatch.tui.screens.confirm import ConfirmScreen
from wfbatch.tui.screens.edit import EditPromptScreen
from wfbatch.tui.screens.live import LiveScreen
from wfbatch.tui.screens.share import Share, ShareScreen
from wfbatch.tui.tabs import JobTab


def job_names(ids: list[int]) -> str:
    """`job 61`, `jobs 61, 62, 63`, `jobs 1, 2, 3, 4, 5 and 7 more`."""
    if len(ids) == 1:
        return f"job {ids[0]}"
    shown = ", ".join(str(i) for i in ids[:5])
    return f"jobs {shown}" + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


class CommandScreen(LiveScreen):
    """The command actions of `MainScreen` (which binds their keys)."""

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


    def action_share(self) -> None:
        """`w`: the highlighted batch's priority and weight, in a small dialog."""
        batch_id = self.batches.scope
        if batch_id is None and (job := self.jobs.highlighted) is not None:
            batch_id = job.batch_id
        batch = self.batches.batches.get(batch_id) if batch_id is not None else None
        if batch is None:
            self.notify("select a batch first (its row in the batches panel)", severity="warning")
            return
        current = Share(batch.priority, batch.weight)

        def apply(wanted: Share | None) -> None:
            if wanted is None:
                return
            if wanted.priority != current.priority:
                self.run_command(
                    f"priority of {batch.name}", lambda: self.client.set_priority(batch.id, wanted.priority)
                )
            if wanted.weight != current.weight:
                self.run_command(
                    f"weight of {batch.name}", lambda: self.client.set_weight(batch.id, wanted.weight)
                )

        self.app.push_screen(ShareScreen(batch.name, current), apply)
