"""Snapshot tests of the TUI's main screens, on a fixed fake daemon state (review SVGs before updating)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.test_tui_support import FakeDaemon, wait_until
from wfbatch.tui import WfbatchApp
from wfbatch.tui.screens.help import HelpScreen
from wfbatch.tui.screens.main import MainScreen
from wfbatch.tui.tabs import JobTab

SIZE = (120, 40)
NARROW = (80, 24)


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Times in the detail pane are local: pin the zone so snapshots match everywhere."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


async def _showing(pilot: Pilot[Any], ready: Callable[[], bool]) -> None:
    """Wait until the screen holds what the snapshot shows, then until the app is idle: no fixed
    pause, which a loaded machine outruns (and a snapshot taken early differs)."""
    await wait_until(ready)
    await pilot.pause()


def _main(app: WfbatchApp) -> MainScreen | None:
    screen = app.screen
    return screen if isinstance(screen, MainScreen) and screen.is_mounted else None


def _failed_rows(app: WfbatchApp) -> bool:
    screen = _main(app)
    return screen is not None and screen.jobs.job_query.tab is JobTab.FAILED and not screen.jobs.fetching \
        and screen.jobs.row_count == 2


def _detail_shown(app: WfbatchApp) -> bool:
    screen = _main(app)
    return screen is not None and bool(screen.detail.display) and screen.detail.job is not None


def _help_shown(app: WfbatchApp) -> bool:
    return isinstance(app.screen, HelpScreen) and app.screen.is_mounted


async def _until_attached(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, WfbatchApp)
    app.animation_level = "none"

    def attached() -> bool:
        screen = _main(app)
        return screen is not None and screen.status is not None and screen.jobs.loaded \
            and not screen.jobs.fetching

    await _showing(pilot, attached)


def test_no_daemon_screen(snap_compare: Any) -> None:
    app = WfbatchApp(FakeDaemon(unavailable=True).client(), close_client=True, retry_interval=30.0,
                     graphics=False)

    async def settle(pilot: Pilot[Any]) -> None:
        pilot.app.animation_level = "none"
        await _showing(pilot, lambda: app.current_mode == "offline" and app.offline_screen.is_mounted
                       and "nothing answers" in app.offline_screen.text.plain)

    assert snap_compare(app, terminal_size=SIZE, run_before=settle)


def test_main_screen_queued_tab(snap_compare: Any) -> None:
    app = WfbatchApp(FakeDaemon().client(), close_client=True, graphics=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=_until_attached)


def test_failed_tab_with_detail(snap_compare: Any) -> None:
    app = WfbatchApp(FakeDaemon().client(), close_client=True, graphics=False)

    async def failed_detail(pilot: Pilot[Any]) -> None:
        await _until_attached(pilot)
        await pilot.press("3")
        await _showing(pilot, lambda: _failed_rows(app))
        await pilot.press("enter")
        await _showing(pilot, lambda: _detail_shown(app))

    assert snap_compare(app, terminal_size=SIZE, run_before=failed_detail)


def test_help_screen(snap_compare: Any) -> None:
    app = WfbatchApp(FakeDaemon().client(), close_client=True, graphics=False)

    async def help_open(pilot: Pilot[Any]) -> None:
        await _until_attached(pilot)
        await pilot.press("question_mark")
        await _showing(pilot, lambda: _help_shown(app))

    assert snap_compare(app, terminal_size=SIZE, run_before=help_open)


def test_main_screen_at_80x24(snap_compare: Any) -> None:
    app = WfbatchApp(FakeDaemon().client(), close_client=True, graphics=False)
    assert snap_compare(app, terminal_size=NARROW, run_before=_until_attached)


def test_failed_tab_at_80x24(snap_compare: Any) -> None:
    app = WfbatchApp(FakeDaemon().client(), close_client=True, graphics=False)

    async def failed(pilot: Pilot[Any]) -> None:
        await _until_attached(pilot)
        await pilot.press("3")
        await _showing(pilot, lambda: _failed_rows(app))

    assert snap_compare(app, terminal_size=NARROW, run_before=failed)


def test_failed_detail_at_80x24(snap_compare: Any) -> None:
    app = WfbatchApp(FakeDaemon().client(), close_client=True, graphics=False)

    async def failed_detail(pilot: Pilot[Any]) -> None:
        await _until_attached(pilot)
        await pilot.press("3")
        await _showing(pilot, lambda: _failed_rows(app))
        await pilot.press("enter")
        await _showing(pilot, lambda: _detail_shown(app))

    assert snap_compare(app, terminal_size=NARROW, run_before=failed_detail)


def test_help_screen_at_80x24(snap_compare: Any) -> None:
    app = WfbatchApp(FakeDaemon().client(), close_client=True, graphics=False)

    async def help_open(pilot: Pilot[Any]) -> None:
        await _until_attached(pilot)
        await pilot.press("question_mark")
        await _showing(pilot, lambda: _help_shown(app))

    assert snap_compare(app, terminal_size=NARROW, run_before=help_open)
