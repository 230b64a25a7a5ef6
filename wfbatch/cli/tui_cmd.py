"""`wfbatch tui`: the terminal UI, attached to the daemon over its socket."""

from __future__ import annotations

from pathlib import Path

import click

from wfbatch.cli.common import home_option, settings_from_flags
from wfbatch.client.client import DaemonClient
from wfbatch.client.locate import socket_path_for


@click.command("tui")
@home_option
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The daemon's socket (default: the one for HOME).",
)
def tui_command(home: Path | None, socket_path: Path | None) -> None:
    """Watch queues and failures, retry and review from the keyboard.

    Needs a running daemon (`wfbatch daemon`, same HOME); waits for one if none answers yet.
    Quitting leaves the daemon running."""
    settings = settings_from_flags(home)
    path = socket_path or socket_path_for(settings)
    # Imported here: textual-image asks the terminal what it can draw when first imported,
    # which must happen before Textual takes the terminal over, and only for this command.
    from wfbatch.tui import WfbatchApp

    app = WfbatchApp(DaemonClient(path), home=settings.home, close_client=True)
    app.run()
