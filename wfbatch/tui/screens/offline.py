"""Shown while no daemon answers (which socket was tried, and how to start one) or while the one
that answers speaks another API version (what to do about it)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Center, Middle
from textual.screen import Screen
from textual.widgets import Footer, Static

from wfbatch.tui.messages import Disconnected


def offline_text(
    socket_path: Path, home: Path | None, reason: str, attempts: int, was_connected: bool
) -> Text:
    text = Text()
    if was_connected:
        text.append("Lost the wfbatch daemon — reconnecting…\n\n", style="bold yellow")
    else:
        text.append("No wfbatch daemon is running here.\n\n", style="bold yellow")
    text.append("Tried the socket  ", style="dim")
    text.append(f"{socket_path}\n", style="bold")
    text.append("Answer            ", style="dim")
    text.append(f"{reason}\n\n")
    text.append("Start one in another terminal (with the same WFBATCH_HOME):\n\n", style="dim")
    home_flag = f" --home {home}" if home is not None else ""
    text.append(f"    wfbatch daemon{home_flag}\n\n", style="bold cyan")
    text.append("This screen connects by itself as soon as the daemon answers", style="dim")
    if attempts:
        text.append(f" (tried {attempts}×, once a second).", style="dim")
    else:
        text.append(".", style="dim")
    text.append("\nPress q to quit.", style="dim")
    return text


def mismatch_text(reason: str) -> Text:
    text = Text()
    text.append("The wfbatch daemon here speaks another version of the API.\n\n", style="bold red")
    text.append(f"{reason}.\n\n")
    text.append("This screen connects by itself once a matching daemon answers.\n", style="dim")
    text.append("Press q to quit.", style="dim")
    return text


class OfflineScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("q", "app.quit", "Quit")]

    def __init__(self, socket_path: Path, home: Path | None) -> None:
        super().__init__()
        self.socket_path = socket_path
        self.home = home
        self.text = offline_text(socket_path, home, "connecting…", 0, False)
        self._message: Static | None = None

    def compose(self) -> ComposeResult:
        self._message = Static(self.text, id="offline-message")
        with Middle(), Center():
            yield self._message
        yield Footer()

    def show(self, message: Disconnected) -> None:
        if message.mismatch:
            self.text = mismatch_text(message.reason)
        else:
            self.text = offline_text(
                message.socket_path, self.home, message.reason, message.attempts, message.was_connected
            )
        # The widget itself, not a query: a second message can come after this screen is mounted
        # but before its children are (seen under load), and must not be lost or raise; and not
        # while the app quits, when its widgets may already be gone.
        if self._message is not None and self.is_attached:
            self._message.update(self.text)
