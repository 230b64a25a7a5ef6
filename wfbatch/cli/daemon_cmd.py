"""`wfbatch daemon`: run the engine, the inbox watcher and the API in the foreground."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from wfbatch.cli.common import EXIT_BAD_INPUT, fail, home_option, settings_from_flags, usable_home
from wfbatch.client import socket_path_for
from wfbatch.daemon import SocketPathError, check_socket_path, run_daemon
from wfbatch.daemon.logs import configure_logging
from wfbatch.daemon.runner import settings_reloader
from wfbatch.home import HomeLocked, UnsafeLockFile
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
def daemon_command(home: Path | None, socket_path: Path | None, log_format: str) -> None:
    """Run the daemon in the foreground: watch HOME/inbox/, run the jobs, serve the API.

    One daemon per HOME. Drop prompt files into the inbox (write them elsewhere, then rename them
    in), or hand them over with `wfbatch submit FILE...`; follow with `wfbatch status` or the TUI.
    SIGTERM/SIGINT stop it (in-flight jobs resume on the next start); SIGHUP reloads the limits
    from wfbatch.toml."""
    overrides = {"socket_path": socket_path} if socket_path is not None else {}
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
