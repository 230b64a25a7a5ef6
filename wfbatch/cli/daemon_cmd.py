"""`wfbatch daemon`: run the engine, the inbox watcher and the API in the foreground."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from wfbatch.cli.common import EXIT_BAD_INPUT, fail, home_option, settings_from_flags, usable_home
from wfbatch.client import socket_path_for
from wfbatch.daemon import SocketPathError, check_socket_path, run_daemon
from wfbatch.daemon.logs import configure_logging
from wfbatch.daemon.runner import settings_reloader
from wfbatch.daemon.sidecars import Sidecar
from wfbatch.home import HomeLayout, HomeLocked, UnsafeLockFile
from wfbatch.settings import Settings
from wfbatch.store import StoreOpenError


@click.command("daemon")
@home_option
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to listen (default: $XDG_RUNTIME_DIR/wfbatch/, else HOME/run/wfbatch.sock).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines on stderr: for people, or one JSON object a line.",
)
@click.option(
    "--web/--no-web",
    default=None,
    help="Serve the review gallery and queue on 127.0.0.1 from the start ([web] enabled; `wfbatch web` "
    "starts them later too and prints the login URL).",
)
def daemon_command(home: Path | None, socket_path: Path | None, log_format: str, web: bool | None) -> None:
    """Run the daemon in the foreground: watch HOME/inbox/, run the jobs, serve the API.

    One daemon per HOME. Drop prompt files into the inbox (write them elsewhere, then rename them
    in), or hand them over with `wfbatch submit FILE...`; follow with `wfbatch status` or the TUI.
    SIGTERM/SIGINT stop it (in-flight jobs resume on the next start); SIGHUP reloads the limits
    from wfbatch.toml."""
    overrides: dict[str, Any] = {"socket_path": socket_path} if socket_path is not None else {}
    if web is not None:
        overrides["web"] = {"enabled": web}
    settings = settings_from_flags(home, **overrides)
    path = socket_path_for(settings).expanduser()
    default_path = usable_home(settings).default_socket_path()
    try:
        check_socket_path(path)
    except SocketPathError as error:
        fail(str(error))
    configure_logging(settings.log_level, log_format)
    try:
        code = asyncio.run(
            run_daemon(
                settings,
                path,
                private_socket_folder=path == default_path,
                reload_settings=settings_reloader(settings.home, overrides),
                sidecars=_sidecars(settings, path),
            )
        )
    except HomeLocked as error:
        fail(f"{error}; stop it first, or give this daemon another HOME", EXIT_BAD_INPUT)
    except UnsafeLockFile as error:
        fail(str(error), EXIT_BAD_INPUT)
    except SocketPathError as error:
        fail(str(error))
    except StoreOpenError as error:  # no driver, a schema to migrate, a server out of reach
        fail(str(error), EXIT_BAD_INPUT)
    sys.exit(code)


def _sidecars(settings: Settings, socket_path: Path) -> list[Sidecar]:
    """What the daemon process can serve besides its socket: the web app, from the start when
    `[web] enabled`, else once `wfbatch web` asks. Composed here, above both, so the daemon never
    imports the web app (which is one more client of the daemon)."""
    layout, port = HomeLayout(settings.home), settings.web.port

    async def web(stop: asyncio.Event, ready: asyncio.Event) -> None:
        # Imported when first served: a daemon that never serves it does not load Jinja2.
        from wfbatch.web import web_sidecar

        await web_sidecar(layout, socket_path, port)(stop, ready)

    return [Sidecar(name="web", run=web, autostart=settings.web.enabled)]
