"""Snapshot tests of the TUI's main screens, on a fixed fake daemon state (review SVGs before updating)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.test_tui_support import FakeDaemon
from wfbatch.tui import WfbatchApp
from wfbatch.tui.screens.main import MainScreen

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


async def _until_attached(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, WfbatchApp)
    app.animation_level = "none"
    for _ in range(100):
        await pilot.pause(0.05)
        screen = app.screen
        if isinstance(screen, MainScreen) and screen.status is not None and screen.jobs.loaded:
            break
    await pilot.pause(0.2)


def test_no_daemon_screen(snap_compare: Any) -> None:
    app = WfbatchApp(FakeDaemon(unavailable=True).client(), close_client=True, retry_interval=30.0,
                     graphics=False)

    async def settle(pilot: Pilot[Any]) -> None:
        pilot.app.animation_level = "none"
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=settle)


def test_main_screen_queued_tab(snap_compare: Any) -> None:
    app = WfbatchApp(FakeDaemon().client(), close_client=True, graphics=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=_until_attached)


def test_failed_tab_with_detail(snap_compare: Any) -> None:
    app = WfbatchApp(FakeDaemon().client(), close_client=True, graphics=False)

    async def failed_detail(pilot: Pilot[Any]) -> None:
        await _until_attached(pilot)
        await pilot.press("3")
        await pilot.pause(0.2)
        await pilot.press("enter")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=failed_detail)


def test_help_screen(snap_compare: Any) -> None:
    app = WfbatchApp(FakeDaemon().client(), close_client=True, graphics=False)

    async def help_open(pilot: Pilot[Any]) -> None:
        await _until_attached(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=help_open)


def test_main_screen_at_80x24(snap_compare: Any) -> None:
    app = WfbatchApp(FakeDaemon().client(), close_client=True, graphics=False)
    assert snap_compare(app, terminal_size=NARROW, run_before=_until_attached)


def test_failed_tab_at_80x24(snap_compare: Any) -> None:
    app = WfbatchApp(FakeDaemon().client(), close_client=True, graphics=False)

    async def failed(pilot: Pilot[Any]) -> None:
        await _until_attached(pilot)
        await pilot.press("3")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=NARROW, run_before=failed)


def test_failed_detail_at_80x24(snap_compare: Any) -> None:
    app = WfbatchApp(FakeDaemon().client(), close_client=True, graphics=False)

    async def failed_detail(pilot: Pilot[Any]) -> None:
        await _until_attached(pilot)
        await pilot.press("3")
        await pilot.pause(0.2)
        await pilot.press("enter")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=NARROW, run_before=failed_detail)


def test_help_screen_at_80x24(snap_compare: Any) -> None:
    app = WfbatchApp(FakeDaemon().client(), close_client=True, graphics=False)

    async def help_open(pilot: Pilot[Any]) -> None:
        await _until_attached(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=NARROW, run_before=help_open)
