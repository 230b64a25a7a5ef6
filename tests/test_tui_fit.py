"""At 80x24 the boxes a newcomer meets first fit the terminal: the offline screen (no daemon, or a
lost one) and the edit modal of a failed job. Both were cut on the right at 80 columns."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widget import Widget

from tests.test_tui_support import DaemonProcess, daemon_process, short_socket_dir, wait_until
from wfbatch.client.client import DaemonClient
from wfbatch.protocol import SubmitRequest
from wfbatch.tui import WfbatchApp
from wfbatch.tui.screens.edit import EditPromptScreen
from wfbatch.tui.tabs import JobTab

NARROW = (80, 24)


def _inside(widget: Widget, width: int) -> bool:
    region = widget.region
    return region.width > 0 and region.x >= 0 and region.right <= width


async def test_the_offline_screen_fits_80_columns_with_a_long_socket_path(tmp_path: Path) -> None:
    socket_path = short_socket_dir() / ("a-rather-long-socket-name-" * 2 + "x.sock")
    app = WfbatchApp(DaemonClient(socket_path), retry_interval=0.2, graphics=False, close_client=True)
    async with app.run_test(size=NARROW):
        offline = app.offline_screen
        await wait_until(lambda: "nothing answers" in offline.text.plain and offline.is_mounted)
        box = offline.query_one("#offline-message")
        await wait_until(lambda: box.region.width > 0)
        assert _inside(box, NARROW[0]), box.region


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    with daemon_process(tmp_path / "home", {"WFBATCH_LOCAL__PERMANENT_FAIL_MARKER": "FAILME"}) as running:
        yield running


async def test_the_edit_modal_fits_80_columns(daemon: DaemonProcess) -> None:
    prompt = "FAILME " + "a long product description that runs on " * 4
    async with DaemonClient(daemon.socket_path) as api:
        await api.submit(SubmitRequest(name="one.jsonl", content=json.dumps({"prompt": prompt}) + "\n"))

        async def failed() -> bool:
            return (await api.status()).jobs["failed"] == 1

        await wait_until(failed)
    app = WfbatchApp(DaemonClient(daemon.socket_path), graphics=False, close_client=True)
    async with app.run_test(size=NARROW) as pilot:
        await wait_until(lambda: app.current_mode == "main" and app.main_screen.status is not None)
        main = app.main_screen
        await pilot.press("3")
        await wait_until(lambda: main.jobs.job_query.tab == JobTab.FAILED and main.jobs.row_count == 1
                         and not main.jobs.fetching)
        await pilot.press("e")
        await wait_until(lambda: isinstance(app.screen, EditPromptScreen))
        box = app.screen.query_one("#edit-box")
        await wait_until(lambda: box.region.width > 0)
        assert _inside(box, NARROW[0]), box.region

