"""`wfbatch web`: have the daemon serve the web app (unless it does) and print its login URL once,
on stdout only (the URL holds the key to the daemon)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from wfbatch.cli.common import EXIT_BAD_INPUT, fail, home_option, settings_from_flags
from wfbatch.client import ApiError, DaemonClient, DaemonUnavailable, VersionMismatch, socket_path_for
from wfbatch.home import HomeLayout
from wfbatch.web import read_server_file, read_token


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
    """Serve the review gallery and queue in the browser, and print the login URL.

    The daemon serves them on 127.0.0.1 only, on `[web] port` (8765 by default); `[web] enabled =
    true` (or `wfbatch daemon --web`) starts them with the daemon. Opening the URL logs this browser
    in (a cookie). The URL holds the key to the daemon: keep it to yourself. From another machine:
    `ssh -L 8765:127.0.0.1:8765 server`, then open it there."""
    settings = settings_from_flags(home)
    path = socket_path or socket_path_for(settings)
    folder = HomeLayout(settings.home).web
    try:
        port = asyncio.run(_serving_port(path, folder))
    except (DaemonUnavailable, VersionMismatch) as error:
        fail(str(error), EXIT_BAD_INPUT)
    except ApiError as error:
        fail(f"the daemon could not serve the web app: {error.error}", EXIT_BAD_INPUT)
    token = read_token(folder)
    if port is None or token is None:
        fail(f"the daemon serves the web app, but {folder} holds no login token or port: "
             "restart the daemon (it writes them)", EXIT_BAD_INPUT)
    click.echo(f"http://127.0.0.1:{port}/login?token={token}")
    if sys.stdout.isatty():
        click.echo("open it in a browser on this machine (from elsewhere: ssh -L, see the README)", err=True)


async def _serving_port(path: Path, folder: Path) -> int | None:
    """The port the daemon's web app listens on, started first unless it runs."""
    async with DaemonClient(path) as client:
        pid = (await client.health()).pid
        served = read_server_file(folder)
        if served is None or served.get("pid") != pid:
            await client.start_sidecar("web")
            served = read_server_file(folder)
    port = served.get("port") if served is not None and served.get("pid") == pid else None
    return port if isinstance(port, int) else None
