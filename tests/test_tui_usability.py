"""The TUI as a newcomer meets it: 80×24, keys that act on the job in view, refreshes that leave
the cursor alone, reasons in the Failed list, and an API error that is not a lost connection.

Behaviour runs against a real daemon (local provider, everything paused so rows hold still); the
fake daemon stands in only for an HTTP 500, which a healthy daemon cannot be made to answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable

from tests.test_tui_support import DaemonProcess, FakeAnswer, FakeDaemon, daemon_process, wait_until
from wfbatch.client.client import DaemonClient
from wfbatch.protocol import CancelRequest, Health, PauseRequest, Status, SubmitRequest
from wfbatch.sim import RunningSimulator, SimOptions
from wfbatch.tui import WfbatchApp
from wfbatch.tui.screens.confirm import ConfirmScreen
from wfbatch.tui.screens.main import MainScreen
from wfbatch.tui.tabs import JobTab
from wfbatch.tui.widgets.header import fit_line
from wfbatch.tui.widgets.jobs_table import fit_columns

NARROW = (80, 24)


def _jsonl(prompts: list[str]) -> str:
    return "".join(json.dumps({"prompt": p, "width": 64, "height": 64}) + "\n" for p in prompts)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    with daemon_process(tmp_path / "home", {"WFBATCH_LOCAL__PERMANENT_FAIL_MARKER": "FAILME"}) as running:
        yield running


@pytest.fixture
async def api(daemon: DaemonProcess) -> AsyncIterator[DaemonClient]:
    async with DaemonClient(daemon.socket_path) as client:
        yield client


async def _attached(pilot: Pilot[Any]) -> MainScreen:
    app = pilot.app
    assert isinstance(app, WfbatchApp)
    await wait_until(lambda: app.current_mode == "main" and app.main_screen.is_mounted  # composed: jobs
                     and app.main_screen.status is not None and app.main_screen.jobs.loaded, within=10)
    return app.main_screen


async def _held_batch(api: DaemonClient, count: int) -> str:
    """`count` queued jobs that stay queued: everything is paused before they arrive."""
    await api.pause(PauseRequest(scope="global", reason="test"))
    content = _jsonl([f"mug {i}" for i in range(count)])
    submitted = await api.submit(SubmitRequest(name="held.jsonl", content=content))
    assert submitted.batch_id
    return submitted.batch_id


async def test_c_cancels_the_job_in_the_detail_pane_not_the_one_under_the_cursor(api: DaemonClient) -> None:
    batch_id = await _held_batch(api, 5)
    app = WfbatchApp(DaemonClient(api.socket_path), retry_interval=0.2, graphics=False, close_client=True)
    async with app.run_test(size=NARROW) as pilot:
        screen = await _attached(pilot)
        await wait_until(lambda: screen.jobs.row_count == 5)
        screen.jobs.move_cursor(row=1)
        shown = screen.jobs.highlighted
        assert shown is not None
        await pilot.press("enter")
        await wait_until(lambda: screen.detail.job is not None and screen.detail.job.id == shown.id)
        # The cursor lands elsewhere (the shown job just started and left the list, say) before
        # the pane has caught up: `c` acts on what the user is looking at, the pane's job.
        with screen.prevent(DataTable.RowHighlighted):
            screen.jobs.move_cursor(row=3)
        await pilot.pause()
        assert screen.detail.job is not None and screen.detail.job.id == shown.id
        assert screen.jobs.highlighted is not None and screen.jobs.highlighted.id != shown.id
        await pilot.press("c")

        async def canceled() -> bool:
            page = await api.jobs(batch_id=batch_id, states=["canceled"])
            return [j.id for j in page.items] == [shown.id]

        await wait_until(canceled)
        assert any(f"job {shown.id}" in n.message for n in app._notifications)


async def test_several_jobs_are_canceled_only_after_a_confirmation(api: DaemonClient) -> None:
    batch_id = await _held_batch(api, 4)
    app = WfbatchApp(DaemonClient(api.socket_path), retry_interval=0.2, graphics=False, close_client=True)
    async with app.run_test(size=NARROW) as pilot:
        screen = await _attached(pilot)
        await wait_until(lambda: screen.jobs.row_count == 4)
        screen.jobs.move_cursor(row=0)
        await pilot.press("space", "space", "c")
        await wait_until(lambda: isinstance(app.screen, ConfirmScreen) and app.screen.is_mounted)
        await pilot.press("n")  # no: nothing happens
        # Answered, and no command running: a cancel the "no" had started would be one of them.
        await wait_until(lambda: not isinstance(app.screen, ConfirmScreen))
        await wait_until(lambda: not [w for w in app.workers if w.group == "commands" and w.is_running])
        assert not (await api.jobs(batch_id=batch_id, states=["canceled"])).items
        await pilot.press("c")
        await wait_until(lambda: isinstance(app.screen, ConfirmScreen) and app.screen.is_mounted)
        await pilot.press("y")

        async def two_canceled() -> bool:
            return len((await api.jobs(batch_id=batch_id, states=["canceled"])).items) == 2

        await wait_until(two_canceled)


async def test_a_refresh_keeps_the_cursor_and_the_scroll_and_g_G_jump(api: DaemonClient) -> None:
    await _held_batch(api, 120)
    app = WfbatchApp(DaemonClient(api.socket_path), retry_interval=0.2, graphics=False, close_client=True)
    async with app.run_test(size=NARROW) as pilot:
        screen = await _attached(pilot)
        table = screen.jobs
        await wait_until(lambda: table.row_count == 120 and not table.fetching)
        table.focus()  # where a person's keys go once the screen is up
        await pilot.pause()
        await pilot.press("G")
        assert table.cursor_row == 119
        await pilot.press("g")
        assert table.cursor_row == 0
        await pilot.press("end")
        assert table.cursor_row == 119
        await pilot.press("home")
        table.move_cursor(row=70)
        await pilot.pause()
        job, scroll = table.highlighted, table.scroll_y
        assert scroll > 0
        await screen.load_jobs().wait()  # what an event or a status tick does
        await pilot.pause()
        assert table.highlighted == job and table.cursor_row == 70 and table.scroll_y == scroll


async def test_the_failed_tab_at_80_columns_shows_each_reason(api: DaemonClient) -> None:
    prompts = ["a FAILME fox", "a FAILME cat"]
    submitted = await api.submit(SubmitRequest(name="fail.jsonl", content=_jsonl(prompts)))
    assert submitted.batch_id

    async def failed() -> bool:
        return (await api.status()).jobs["failed"] == 2

    await wait_until(failed)
    app = WfbatchApp(DaemonClient(api.socket_path), retry_interval=0.2, graphics=False, close_client=True)
    async with app.run_test(size=NARROW) as pilot:
        screen = await _attached(pilot)
        await pilot.press("3")
        await wait_until(lambda: screen.jobs.row_count == 2 and not screen.jobs.fetching)
        await pilot.pause()
        shot = app.export_screenshot().replace("&#160;", " ")
        for job in (await api.jobs(states=["failed"])).items:
            assert job.error is not None
            cells = [str(c) for c in screen.jobs.get_row(str(job.id))]
            assert job.error.message in cells
            # Seen on screen: the reason's words, not just the first one.
            assert "local renderer refused the prompt" in shot


def test_columns_give_the_failed_reason_the_width() -> None:
    narrow = dict((spec.key, width) for spec, width in fit_columns(JobTab.FAILED, 80))
    assert {"id", "state", "error"} <= narrow.keys() and narrow["error"] >= 40
    wide = dict((spec.key, width) for spec, width in fit_columns(JobTab.FAILED, 140))
    assert wide["error"] > wide["prompt"] >= 20
    done = dict((spec.key, width) for spec, width in fit_columns(JobTab.DONE, 80))
    assert done["prompt"] >= 20
    running = dict((spec.key, width) for spec, width in fit_columns(JobTab.RUNNING, 80))
    assert "for" in running


def test_header_lines_drop_the_least_useful_parts_first() -> None:
    from rich.text import Text

    line = fit_line([(Text("● connected"), 100), (Text("  /a/long/socket/path.sock"), 10),
                     (Text("   ▶ running"), 50)], 30)
    assert line.plain == "● connected   ▶ running"


class FailingStatus(FakeDaemon):
    """Answers /v1/status with a 500 once: a bug in the daemon, not a lost daemon."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 3
        self.health_checks = 0
        self.status_reads = 0

    async def health(self) -> Health:
        self.health_checks += 1
        return await super().health()

    async def status(self) -> Status:
        self.status_reads += 1
        if self.failures:
            self.failures -= 1
            raise FakeAnswer(500, "internal error in the wfbatch daemon (see its log)")
        return await super().status()


async def test_an_api_error_says_what_failed_and_keeps_the_connection() -> None:
    fake = FailingStatus()
    app = WfbatchApp(fake.client(), close_client=True, retry_interval=0.2, status_interval=0.2,
                     graphics=False)
    async with app.run_test(size=NARROW):
        await wait_until(lambda: app.current_mode == "main" and app.main_screen.status is not None)
        # Two more status ticks, not a sleep: a reconnection the errors had asked for comes first.
        reads = fake.status_reads
        await wait_until(lambda: fake.status_reads >= reads + 2)
        assert app.current_mode == "main" and app.connected
        assert fake.health_checks == 1  # never treated as a lost daemon: no reconnection
        messages = [n.message for n in app._notifications]
        assert any("500" in m and "internal error" in m for m in messages), messages


async def test_batch_names_from_the_first_paint() -> None:
    app = WfbatchApp(FakeDaemon().client(), close_client=True, graphics=False)
    async with app.run_test(size=(140, 45)) as pilot:
        screen = app.main_screen
        await wait_until(lambda: app.current_mode == "main" and screen.is_mounted and screen.jobs.loaded)
        await pilot.pause()
        cells = [str(c) for c in screen.jobs.get_row("1")]
        assert "landscapes" in cells and "b1" not in cells


async def test_cancel_of_a_running_job_asks_first() -> None:
    fake = FakeDaemon()
    app = WfbatchApp(fake.client(), close_client=True, graphics=False)
    async with app.run_test(size=NARROW) as pilot:
        screen = app.main_screen
        await wait_until(lambda: app.current_mode == "main" and screen.is_mounted and screen.jobs.loaded)
        await pilot.press("2")
        await wait_until(lambda: screen.jobs.row_count == 1 and screen.jobs.job_query.tab is JobTab.RUNNING)
        await pilot.press("c")
        await wait_until(lambda: isinstance(app.screen, ConfirmScreen) and app.screen.is_mounted)
        assert fake.commands == []
        await pilot.press("y")
        await wait_until(lambda: fake.commands == [CancelRequest(job_ids=[3])])


@pytest.fixture
def comfy_daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    """A daemon whose default provider is a simulated ComfyUI taking 8 s a prompt (20 steps)."""
    with RunningSimulator(SimOptions(provider="comfyui", latency=(8.0, 8.0))) as sim:
        env = {"WFBATCH_PROVIDER": "comfyui", "WFBATCH_COMFYUI__BASE_URL": sim.base_url,
               "WFBATCH_COMFYUI__POLL_INITIAL": "0.2", "WFBATCH_COMFYUI__POLL_MAX": "0.5"}
        with daemon_process(tmp_path / "home", env) as running:
            yield running


async def test_the_running_tab_at_80_columns_follows_a_comfyui_jobs_steps(
    comfy_daemon: DaemonProcess,
) -> None:
    async with DaemonClient(comfy_daemon.socket_path) as api:
        submitted = await api.submit(SubmitRequest(name="c.jsonl", content=_jsonl(["a lighthouse"])))
        assert submitted.batch_id
        app = WfbatchApp(DaemonClient(api.socket_path), retry_interval=0.2, graphics=False, close_client=True)
        async with app.run_test(size=NARROW) as pilot:
            screen = await _attached(pilot)
            await pilot.press("2")
            await wait_until(lambda: screen.jobs.row_count == 1 and not screen.jobs.fetching, within=15)
            job_id = next(iter(screen.jobs.jobs))

            def steps() -> str | None:
                cell = str(screen.jobs.get_cell(str(job_id), "progress"))
                return cell if re.fullmatch(r"\d+/20", cell) else None

            first = await wait_until(steps, within=15)
            # The row stays (still running): only the progress events move the cell on.
            later = await wait_until(lambda: (s := steps()) and s != first and s, within=10)
            await pilot.pause()
            shot = app.export_screenshot().replace("&#160;", " ")
    assert int(later.split("/")[0]) > int(first.split("/")[0])
    assert "progress" in shot and "a lighthouse" in shot  # the column fits 80 columns beside the prompt
    running = dict((spec.key, width) for spec, width in fit_columns(JobTab.RUNNING, 80))
    assert running["progress"] >= len("1000/1000") and running["prompt"] >= 20
