"""The TUI's `w` key against a real daemon: a batch's priority and weight in a small dialog, sent
through the API and shown back in the batches panel."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import Input

from tests.test_tui_support import DaemonProcess, daemon_process, wait_until
from wfbatch.client.client import DaemonClient
from wfbatch.protocol import BatchSummary, Hold, SubmitRequest
from wfbatch.tui import WfbatchApp
from wfbatch.tui.screens.share import Share, ShareScreen, parse_share
from wfbatch.tui.widgets.batches import _state_text

SIZE = (120, 40)
SLOW = {"WFBATCH_LOCAL__LATENCY_MIN": "5", "WFBATCH_LOCAL__LATENCY_MAX": "5"}  # stays running


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    with daemon_process(tmp_path / "home", SLOW) as running:
        yield running


def test_the_dialog_says_what_is_wrong_in_one_line() -> None:
    assert parse_share("3", "2") == Share(3, 2.0)
    assert parse_share("x", "1") == "priority is a whole number, not 'x'"
    assert isinstance(parse_share("1", "0"), str) and isinstance(parse_share("1", "nan"), str)


async def test_w_sets_the_highlighted_batchs_priority_and_weight(daemon: DaemonProcess) -> None:
    async with DaemonClient(daemon.socket_path) as api:
        content = "".join(json.dumps({"prompt": f"p{i}", "width": 64, "height": 64}) + "\n" for i in range(3))
        submitted = await api.submit(SubmitRequest(name="shared.jsonl", content=content))
        batch_id = submitted.batch_id
        assert batch_id is not None
        app = WfbatchApp(DaemonClient(api.socket_path), retry_interval=0.2, graphics=False, close_client=True)
        async with app.run_test(size=SIZE) as pilot:
            screen = app.main_screen
            await wait_until(lambda: screen.is_mounted and batch_id in screen.batches.batches)
            screen.batches.focus()
            screen.batches.move_cursor(row=screen.batches.get_row_index(batch_id))
            await pilot.pause()
            await pilot.press("w")
            await wait_until(lambda: isinstance(app.screen, ShareScreen))
            app.screen.query_one("#share-priority", Input).value = "4"
            app.screen.query_one("#share-weight", Input).value = "2"
            app.screen.query_one("#share-weight", Input).focus()
            await pilot.press("enter")

            async def changed() -> bool:
                batch = await api.batch(batch_id)
                return batch.priority == 4 and batch.weight == 2

            await wait_until(changed)


def test_the_batches_panel_says_scheduled_with_the_time_and_a_shared_providers_share() -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    base = {"id": "b1", "name": "n", "source_name": "n.jsonl", "provider": "local",
            "created_at": dt.datetime.now(dt.UTC), "output_dir": "/o", "paused": False,
            "counts": {"queued": 3}, "total": 3}
    scheduled = BatchSummary.model_validate({**base, "not_before": later})
    assert _state_text(scheduled, None).plain == f"scheduled {later.astimezone():%H:%M}"
    # Its own time wins over its provider's window (the hold is on the line under the batches).
    window = Hold(kind="window", scope="provider", target="local", reason="outside", lift="wait")
    assert _state_text(scheduled, window).plain == f"scheduled {later.astimezone():%H:%M}"
    assert _state_text(BatchSummary.model_validate(base), window).plain == "held: window"
    shared = BatchSummary.model_validate({**base, "share": 0.25})
    assert _state_text(shared, None).plain == "running 25%"
    alone = BatchSummary.model_validate({**base, "share": 1.0})
    assert _state_text(alone, None).plain == "running"


async def test_the_dialog_names_a_batch_with_brackets_as_written() -> None:
    from textual.app import App
    from textual.widgets import Label

    class Shown(App[None]):
        def on_mount(self) -> None:
            self.push_screen(ShareScreen("shoes [v2]", Share(0, 1.0)))

    app = Shown()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        first = app.screen.query(Label).first()
        assert "Batch shoes [v2]:" in str(first.render())


async def test_the_edit_dialog_quotes_the_providers_error_as_it_came() -> None:
    from textual.app import App
    from textual.widgets import Label

    from wfbatch.tui.screens.edit import EditPromptScreen

    error = "400: the part [image] is not a PNG"

    class Shown(App[None]):
        def on_mount(self) -> None:
            self.push_screen(EditPromptScreen(7, "a fox", error))

    app = Shown()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert error in str(app.screen.query_one("#edit-error", Label).render())
