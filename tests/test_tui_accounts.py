"""The TUI with a provider of several accounts: one header line per provider at 80 columns with
the accounts counted by state, and every account listed on `?`."""

from __future__ import annotations

from rich.console import Console
from textual.app import App
from textual.widgets import Static

from wfbatch.protocol import AccountStatus, ProviderStatus, Status
from wfbatch.tui.screens.help import HelpScreen
from wfbatch.tui.widgets.header import fit_line, provider_parts


def _wireflow() -> ProviderStatus:
    accounts = [
        AccountStatus(name="studio", pool="studio", executions_in_window=7, executions_per_minute=10),
        AccountStatus(name="client-a", pool="client-a", executions_in_window=3, executions_per_minute=10),
        AccountStatus(
            name="client-b",
            pool="client-b",
            state="held",
            kind="authentication",
            why="wireflow: authentication failed (401): Invalid API key",
        ),
    ]
    return ProviderStatus(
        name="wireflow", label="wireflow", executions_per_minute=30, max_in_flight=30, accounts=accounts
    )


def test_the_header_summarises_the_accounts_on_one_line_of_80_columns() -> None:
    line = fit_line(provider_parts(_wireflow()), 80)
    assert line.cell_len <= 80 and "\n" not in line.plain
    assert "3 accounts: 2 ok, 1 disabled" in line.plain


def test_the_header_counts_an_account_outside_its_window_as_such() -> None:
    wireflow = _wireflow()
    wireflow.accounts[0] = wireflow.accounts[0].model_copy(
        update={"state": "held", "kind": "window", "why": "outside its [schedule] windows (03:00-04:00)"}
    )
    line = fit_line(provider_parts(wireflow), 80)
    assert "3 accounts: 1 ok, 1 disabled, 1 outside window" in line.plain, line.plain


async def test_question_mark_lists_every_account_and_why_it_is_held() -> None:
    status = Status(version="t", jobs={}, paused=False, providers={"wireflow": _wireflow()}, batches=[])

    class Shown(App[None]):
        def on_mount(self) -> None:
            self.push_screen(HelpScreen(status))

    app = Shown()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#help-accounts", Static).content
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    for name in ("studio", "client-a", "client-b"):
        assert name in text
    assert "7/10 starts/min" in text and "held: wireflow: authentication failed (401)" in text


async def test_question_mark_shows_a_reason_with_brackets_as_written() -> None:
    # "[schedule]" in a window hold's reason was read as Rich markup and vanished.
    wireflow = _wireflow()
    reason = "outside its [schedule] windows (03:00-04:00): opens at 03:00"
    held = {"state": "held", "kind": "window", "why": reason}
    wireflow.accounts[0] = wireflow.accounts[0].model_copy(update=held)
    status = Status(version="t", jobs={}, paused=False, providers={"wireflow": wireflow}, batches=[])

    class Shown(App[None]):
        def on_mount(self) -> None:
            self.push_screen(HelpScreen(status))

    app = Shown()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#help-accounts", Static).content
    console = Console(width=200, record=True)
    console.print(table)
    assert reason in console.export_text()


def test_a_provider_held_by_a_long_reason_still_says_so_at_80_columns() -> None:
    # Seen in a rehearsal: every account outside its window, and the header line read only
    # "wireflow": the hold, longer than the line, was dropped with everything else.
    reason = "outside its [schedule] windows (03:00-04:00 Europe/Berlin): the next opens at Tue 03:00 CET"
    held = _wireflow().model_copy(update={"paused": reason})
    line = fit_line(provider_parts(held), 80)
    assert line.cell_len <= 80 and line.plain.startswith("wireflow  ⏸ outside its [schedule] windows")
    assert line.plain.endswith("…")
