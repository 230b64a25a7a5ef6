"""The `?` screen: every key, what it does, and where it applies."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from wfbatch.protocol import Status

KEYS: list[tuple[str, str]] = [
    ("1 2 3 4 5", "tabs: Queued, Running, Failed (and canceled), Done, Review"),
    ("↑ ↓ PgUp PgDn", "move; the next page loads as you near the end"),
    ("Home g / End G", "first / last job loaded"),
    ("tab", "switch between the batches panel and the jobs table"),
    ("enter", "details of the job: prompt, params, attempts, image"),
    ("escape", "close the details / clear the selection / clear the filter"),
    ("space", "select several jobs (r, c, a, x then act on all of them)"),
    ("r", "retry the job shown (or the selected ones: asks first)"),
    ("R", "retry every failed job of the selected batch (all when none is); asks first"),
    ("c", "cancel the job shown (asks first for several, or one being executed)"),
    ("e", "edit a failed job's prompt and requeue it"),
    ("a / x", "approve / reject in the Review tab (files move, manifest updates)"),
    ("p", "pause / resume the selected batch (or the highlighted job's batch)"),
    ("P", "pause / resume everything"),
    ("w", "priority and weight of the selected batch (its share of the provider)"),
    ("/", "filter jobs by prompt text"),
    ("?", "this help"),
    ("q", "quit (the daemon keeps running)"),
]


def keys_table() -> Table:
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    for key, what in KEYS:
        table.add_row(key, what)
    return table


def accounts_table(status: Status | None) -> Table | None:
    """Every account of each provider that has several: its pool's use and what holds it (the
    header only counts them). None when no provider has several."""
    rows = [
        (name, account.describe())
        for name, provider in (status.providers.items() if status is not None else ())
        for account in provider.accounts
    ]
    if not rows:
        return None
    table = Table(box=None, show_header=False, pad_edge=False, title="Accounts", title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for name, line in rows:
        table.add_row(Text(name), Text(line))  # not markup: "[schedule]" in a reason vanished
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", show=False),
        Binding("q", "dismiss", "Close", show=False),
    ]

    def __init__(self, status: Status | None = None) -> None:
        super().__init__()
        self.status = status

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            accounts = accounts_table(self.status)
            if accounts is not None:
                yield Static(accounts, id="help-accounts")
            yield Static(keys_table())
            yield Static("The selected batch is the highlighted row of the batches panel.", classes="dim")
