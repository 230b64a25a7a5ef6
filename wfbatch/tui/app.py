"""`WfbatchApp`: attaches to the daemon and switches between the offline and the main screen."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import App
from textual.binding import Binding, BindingType

from wfbatch.client import DaemonClient
from wfbatch.tui.connection import watch_daemon
from wfbatch.tui.messages import Connected, ConnectionTrouble, DataChanged, Disconnected
from wfbatch.tui.screens.help import HelpScreen
from wfbatch.tui.screens.main import MainScreen
from wfbatch.tui.screens.offline import OfflineScreen

CONNECTING_GRACE = 0.5
"""Seconds the first connection attempt may go unanswered before the offline screen shows which
socket is being tried (a daemon that accepts but does not answer, e.g. stopped with SIGSTOP)."""


class WfbatchApp(App[None]):
    CSS_PATH = "styles.tcss"
    TITLE = "wfbatch"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "help", "help"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(
        self,
        client: DaemonClient,
        *,
        home: Path | None = None,
        retry_interval: float = 1.0,
        status_interval: float = 2.0,
        graphics: bool = True,
        close_client: bool = False,
    ) -> None:
        super().__init__()
        self.client = client
        self.home = home
        self.retry_interval = retry_interval
        self.status_interval = status_interval
        self.graphics = graphics
        self.close_client = close_client
        self.connected = False
        self.ever_connected = False
        """Attached at least once: a failure to reach the daemon afterwards is a lost daemon."""
        self.main_screen = MainScreen(client, status_interval=status_interval, graphics=graphics)
        self.offline_screen = OfflineScreen(client.socket_path, home)
        self.add_mode("offline", lambda: self.offline_screen)
        self.add_mode("main", lambda: self.main_screen)

    async def on_mount(self) -> None:
        # No offline screen first: composing it and switching away cost the first paint ~100 ms
        # when the daemon answers (the usual case). It comes at the first failed attempt, or when
        # the first attempt is still waiting for an answer after a moment.
        self.watch_connection()
        self.set_timer(CONNECTING_GRACE, self._still_connecting)

    async def _still_connecting(self) -> None:
        if not self.connected and self.current_mode != "offline":
            await self.switch_mode("offline")

    async def on_unmount(self) -> None:
        if self.close_client:
            await self.client.aclose()

    @work(exclusive=True, group="connection")
    async def watch_connection(self) -> None:
        await watch_daemon(
            self.client,
            self.post_message,
            retry_interval=self.retry_interval,
            was_connected=self.ever_connected,
        )

    @on(Connected)
    async def _connected(self, message: Connected) -> None:
        self.connected = self.ever_connected = True
        self.sub_title = f"daemon {message.health.version}, pid {message.health.pid}"
        if self.current_mode != "main":
            await self.switch_mode("main")
        self.main_screen.attached(message.health)

    @on(Disconnected)
    async def _disconnected(self, message: Disconnected) -> None:
        self.connected = False
        if self.current_mode != "offline":
            await self.switch_mode("offline")
        self.offline_screen.show(message)

    @on(DataChanged)
    def _data_changed(self, message: DataChanged) -> None:
        if self.connected:
            self.main_screen.changed(message.changes)

    @on(ConnectionTrouble)
    def _connection_trouble(self, message: ConnectionTrouble) -> None:
        # The event stream may not have noticed yet (a daemon killed hard): start over at once.
        if self.connected:
            self.connected = False
            self.watch_connection()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.main_screen.status))
