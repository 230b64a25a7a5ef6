"""`wfbatch web`: the login URL of the web app the daemon serves (printed once, on stdout only)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from wfbatch.cli.common import EXIT_BAD_INPUT, fail, home_option, settings_from_flags
from wfbatch.client import ApiError, DaemonClient, DaemonUnavailable, VersionMismatch, socket_path_for
from wfbatch.home import HomeLayout
from wfbatch.web import read_server_file, read_token

NOT_SERVED = (
    "the daemon for {home} (pid {pid}) does not serve the web app: set `[web] enabled = true` "
    "(and `port`) in wfbatch.toml, or start it with `wfbatch daemon --web`, then run `wfbatch web` again"
)


@click.command("web")
@home_option
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The daemon's socket (default: the one for HOME).",
)
def web_command(home: Path | None, socket_path: Path | None) -> None:
    """Print the login URL of the review gallery and queue in the browser.

    The daemon serves them on 127.0.0.1 when `[web] enabled = true` (or `wfbatch daemon --web`).
    Opening the URL logs this browser in (a cookie); the URL holds the key to the daemon, so keep it
    to yourself. From another machine: `ssh -L PORT:127.0.0.1:PORT server`, then open it there."""
    settings = settings_from_flags(home)
    path = socket_path or socket_path_for(settings)
    try:
        pid = asyncio.run(_daemon_pid(path))
    except (DaemonUnavailable, VersionMismatch, ApiError) as error:
        fail(str(error), EXIT_BAD_INPUT)
    folder = HomeLayout(settings.home).web
    served = read_server_file(folder)
    token = read_token(folder)
    if served is None or served.get("pid") != pid or token is None or not isinstance(served.get("port"), int):
        fail(NOT_SERVED.format(home=settings.home, pid=pid), EXIT_BAD_INPUT)
    assert served is not None
    click.echo(f"http://127.0.0.1:{served['port']}/login?token={token}")
    if sys.stdout.isatty():
        click.echo("open it in a browser on this machine (elsewhere: ssh -L, see the README)", err=True)


async def _daemon_pid(path: Path) -> int:
    async with DaemonClient(path) as client:
        return (await client.health()).pid
