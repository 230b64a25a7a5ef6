"""The TUI driven from the keyboard against a real daemon (local provider) on a temporary socket.

Prompts containing FAILME fail permanently (WFBATCH_LOCAL__PERMANENT_FAIL_MARKER), so the Failed
tab has rows with an HTTP status and a request id; every effect is asserted through the API.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from tests.test_tui_support import DaemonProcess, daemon_process, short_socket_dir, wait_until
from wfbatch.client.client import DaemonClient
from wfbatch.protocol import CancelRequest, JobDetail, PauseRequest, SubmitRequest
from wfbatch.tui import WfbatchApp
from wfbatch.tui.messages import ConnectionTrouble
from wfbatch.tui.screens.confirm import ConfirmScreen
from wfbatch.tui.screens.edit import EditPromptScreen
from wfbatch.tui.screens.main import MainScreen
from wfbatch.tui.widgets.detail import DetailPane

SIZE = (120, 40)
MARKER_ENV = {"WFBATCH_LOCAL__PERMANENT_FAIL_MARKER": "FAILME"}


def _jsonl(prompts: list[str]) -> str:
    return "".join(json.dumps({"prompt": p, "width": 64, "height": 64}) + "\n" for p in prompts)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    with daemon_process(tmp_path / "home", MARKER_ENV) as running:
        yield running


@pytest.fixture
async def api(daemon: DaemonProcess) -> AsyncIterator[DaemonClient]:
    async with DaemonClient(daemon.socket_path) as client:
        yield client


def _is_file(path: str) -> bool:
    return Path(path).is_file()


async def _attached(pilot: Pilot[Any]) -> MainScreen:
    app = pilot.app
    assert isinstance(app, WfbatchApp)

    def ready() -> bool:
        screen = app.main_screen
        # Composed and mounted before anything queries it: `screen.jobs` is a query_one.
        if app.current_mode != "main" or not screen.is_mounted:
            return False
        return screen.status is not None and screen.jobs.loaded

    await wait_until(ready, within=10)
    return app.main_screen


async def _rows(pilot: Pilot[Any], screen: MainScreen, count: int) -> None:
    await wait_until(lambda: screen.jobs.loaded and not screen.jobs.fetching
                     and screen.jobs.row_count == count, within=10)
    await pilot.pause()


async def _by_prompt(api: DaemonClient, batch_id: str) -> dict[str, JobDetail]:
    page = await api.jobs(batch_id=batch_id, limit=100)
    return {j.prompt: await api.job(j.id) for j in page.items}


async def test_failures_retry_edit_and_review_from_the_keyboard(api: DaemonClient) -> None:
    prompts = ["red barn FAILME one", "red barn FAILME two", "green field", "blue lake"]
    submitted = await api.submit(SubmitRequest(name="barns.jsonl", content=_jsonl(prompts)))
    assert submitted.batch_id and not submitted.errors
    batch_id = submitted.batch_id

    async def settled() -> bool:
        counts = (await api.status()).jobs
        return counts["failed"] == 2 and counts["done"] == 2

    await wait_until(settled)
    before = await _by_prompt(api, batch_id)

    app = WfbatchApp(DaemonClient(api.socket_path), retry_interval=0.2, graphics=False, close_client=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _attached(pilot)

        # Failed tab: both failures, with HTTP status and the provider's own reason (the request
        # id is in the detail pane, and in the table when it is wide enough).
        await pilot.press("3")
        await _rows(pilot, screen, 2)
        first = before[prompts[0]]
        assert first.error is not None and first.error.request_id
        cells = [str(c) for c in screen.jobs.get_row(str(first.id))]
        assert first.error.message in cells and "422" in cells

        # R: every failed job runs again (a new attempt each; the marker makes them fail again),
        # after a confirmation naming how many.
        await pilot.press("R")
        await wait_until(lambda: isinstance(app.screen, ConfirmScreen) and app.screen.is_mounted)
        await pilot.press("y")

        async def ran_again() -> bool:
            now = await _by_prompt(api, batch_id)
            return all(
                len(now[p].attempts_history) > len(before[p].attempts_history) and now[p].state == "failed"
                for p in prompts[:2]
            )

        await wait_until(ran_again)
        await _rows(pilot, screen, 2)

        # space selects several, r retries the selection (after a confirmation: several jobs).
        retried = await _by_prompt(api, batch_id)
        screen.jobs.move_cursor(row=0)
        await pilot.press("space", "space", "r")
        await wait_until(lambda: isinstance(app.screen, ConfirmScreen) and app.screen.is_mounted)
        await pilot.press("y")

        async def ran_third_time() -> bool:
            now = await _by_prompt(api, batch_id)
            return all(
                len(now[p].attempts_history) > len(retried[p].attempts_history) and now[p].state == "failed"
                for p in prompts[:2]
            )

        await wait_until(ran_third_time)
        await _rows(pilot, screen, 2)

        # enter: the detail pane shows the highlighted job with its attempts.
        screen.jobs.move_cursor(row=0)
        target = screen.jobs.highlighted
        assert target is not None
        await pilot.press("enter")
        pane = screen.query_one(DetailPane)
        await wait_until(lambda: pane.display and pane.job is not None and pane.job.id == target.id)
        assert len(pane.job.attempts_history) >= 3 if pane.job else False

        # e: edit the prompt (drop the marker) and requeue; the job is done.
        await pilot.press("e")
        await wait_until(lambda: isinstance(app.screen, EditPromptScreen) and app.screen.is_mounted)
        app.screen.query_one("#edit-input", Input).value = "red barn, fixed"
        await pilot.press("enter")

        async def edited_done() -> bool:
            job = await api.job(target.id)
            return job.state == "done" and job.prompt == "red barn, fixed"

        await wait_until(edited_done)
        await _rows(pilot, screen, 1)

        # Review: approve the first image, reject the next; the files move.
        await pilot.press("escape", "5")
        await _rows(pilot, screen, 3)
        screen.jobs.move_cursor(row=0)
        approved_id = screen.jobs.selected_ids()[0]
        await pilot.press("a")

        async def reviewed(job_id: int, verdict: str, folder: str) -> bool:
            job = await api.job(job_id)
            return job.review == verdict and job.file_path is not None and f"/{folder}/" in job.file_path

        await wait_until(lambda: reviewed(approved_id, "approved", "approved"))
        await _rows(pilot, screen, 2)
        screen.jobs.move_cursor(row=0)
        rejected_id = screen.jobs.selected_ids()[0]
        assert rejected_id != approved_id
        await pilot.press("x")
        await wait_until(lambda: reviewed(rejected_id, "rejected", "rejected"))

        approved = await api.job(approved_id)
        rejected = await api.job(rejected_id)
        assert approved.file_path and _is_file(approved.file_path)
        assert rejected.file_path and _is_file(rejected.file_path)
        assert not _is_file(str(Path(approved.output_dir) / "pending-review" / Path(approved.file_path).name))
        await _rows(pilot, screen, 1)


async def test_pause_and_resume_everything(api: DaemonClient) -> None:
    app = WfbatchApp(DaemonClient(api.socket_path), retry_interval=0.2, graphics=False, close_client=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _attached(pilot)
        await pilot.press("P")

        async def paused(expected: bool) -> bool:
            return (await api.status()).paused is expected

        await wait_until(lambda: paused(True))
        await wait_until(lambda: screen.status is not None and screen.status.paused)
        await pilot.press("P")
        await wait_until(lambda: paused(False))


async def test_a_daemon_that_answers_gets_the_main_screen_first_with_its_batch_names(
    api: DaemonClient,
) -> None:
    """First paint: no offline screen composed and swapped out first, and the page of jobs is not
    held back by a status read of its own; the batch column's names come with the status loaded
    beside it (status_interval is an hour: no later tick fills them in)."""
    submitted = await api.submit(SubmitRequest(name="names.jsonl", content=_jsonl(["one", "two"])))
    assert submitted.batch_id
    app = WfbatchApp(DaemonClient(api.socket_path), status_interval=3600, graphics=False, close_client=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _attached(pilot)
        await wait_until(lambda: submitted.batch_id in screen.jobs.batch_names)
        assert not app.offline_screen.is_mounted


async def test_a_daemon_that_accepts_but_never_answers_gets_the_offline_screen() -> None:
    """The main screen comes first when the daemon answers (no offline screen composed and swapped
    out first); when the first attempt hangs, the offline screen still says which socket it tries."""
    socket_path = short_socket_dir() / "silent.sock"
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(str(socket_path))
    silent.listen(1)  # connections queue in the backlog; nothing ever answers them
    client = DaemonClient(socket_path, timeout=3600)  # the first attempt hangs for the whole test
    app = WfbatchApp(client, retry_interval=0.2, graphics=False, close_client=True)
    try:
        async with app.run_test(size=SIZE):
            # Bounded well below the client's timeout: the screen comes while the attempt still hangs.
            await wait_until(lambda: app.current_mode == "offline", within=60)
            assert "connecting…" in app.offline_screen.text.plain
            assert str(socket_path) in app.offline_screen.text.plain
            assert not app.connected
    finally:
        silent.close()


async def test_no_daemon_screen_then_attach_and_reattach_after_restart(tmp_path: Path) -> None:
    socket_dir = short_socket_dir()
    daemon = DaemonProcess(tmp_path / "home", socket_dir / "d.sock", MARKER_ENV)
    app = WfbatchApp(DaemonClient(daemon.socket_path), retry_interval=0.2, graphics=False, close_client=True)
    try:
        async with app.run_test(size=SIZE) as pilot:
            offline = app.offline_screen
            await wait_until(lambda: "nothing answers" in offline.text.plain)
            assert app.current_mode == "offline"
            assert str(daemon.socket_path) in offline.text.plain
            assert "wfbatch daemon" in offline.text.plain

            daemon.spawn()
            await daemon.wait_healthy()
            await _attached(pilot)

            daemon.stop()
            await wait_until(lambda: app.current_mode == "offline" and "Lost" in offline.text.plain)

            daemon.spawn()
            await daemon.wait_healthy()
            app.main_screen.status = None
            await _attached(pilot)
    finally:
        daemon.stop()


async def test_a_call_that_fails_first_still_says_the_daemon_was_lost(tmp_path: Path) -> None:
    # A page load can meet the dead socket before the event stream does: the watch then starts
    # over, and the new one must still say "Lost", not "No wfbatch daemon is running here".
    daemon = DaemonProcess(tmp_path / "home", short_socket_dir() / "d.sock", MARKER_ENV)
    daemon.spawn()
    app = WfbatchApp(DaemonClient(daemon.socket_path), retry_interval=0.2, graphics=False, close_client=True)
    try:
        await daemon.wait_healthy()
        async with app.run_test(size=SIZE) as pilot:
            await _attached(pilot)
            daemon.stop()
            app.post_message(ConnectionTrouble("the jobs page: connection refused"))
            offline = app.offline_screen
            await wait_until(lambda: app.current_mode == "offline" and "Lost" in offline.text.plain)
            assert "No wfbatch daemon" not in offline.text.plain
    finally:
        daemon.stop()


async def test_a_row_follows_its_job_from_the_event_stream_alone(api: DaemonClient) -> None:
    """Status polling is an hour away: only the `job` event of the cancel can move the row."""
    await api.pause(PauseRequest(scope="global"))
    submitted = await api.submit(SubmitRequest(name="held.jsonl", content=_jsonl(["one", "two", "three"])))
    assert submitted.batch_id and submitted.jobs == 3
    app = WfbatchApp(DaemonClient(api.socket_path), retry_interval=0.2, status_interval=3600,
                     graphics=False, close_client=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _attached(pilot)
        await _rows(pilot, screen, 3)  # the Queued tab
        target = min(screen.jobs.jobs)
        await api.cancel(CancelRequest(job_ids=[target]))
        # The row leaves the Queued tab, and the header counts follow, with no poll in between.
        await _rows(pilot, screen, 2)
        assert target not in screen.jobs.jobs
        await wait_until(lambda: screen.status is not None and screen.status.jobs["canceled"] == 1)
