"""What every command that talks to the daemon shares: where its socket is, one call to it, and
one line (exit 2) when no daemon answers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx

from wfbatch.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, fail, home_option, settings_from_flags
from wfbatch.client import (
    ApiError,
    DaemonClient,
    DaemonUnavailable,
    UntrustedDaemon,
    VersionMismatch,
    socket_path_for,
)

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

socket_option = click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The daemon's socket (default: the one for HOME).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")


def wide_option(command: F) -> F:
    """`--wide`, or `-o wide` as kubectl spells it: every column, nothing cut to the terminal."""
    command = click.option(
        "-o", "--output", "output", type=click.Choice(["wide"]), default=None,
        help="`wide`: the same as --wide.",
    )(command)
    return click.option(
        "--wide", is_flag=True, help="Every column in full, however long the lines get."
    )(command)


def remote_options(command: F) -> F:
    """--home, --socket and --json, in that order in --help."""
    return home_option(socket_option(json_option(command)))


def resolve_socket(home: Path | None, socket_path: Path | None) -> Path:
    if socket_path is not None:
        return socket_path.expanduser()
    return socket_path_for(settings_from_flags(home)).expanduser()


def describe_api_error(error: ApiError) -> str:
    detail = error.detail
    if isinstance(detail, str) and detail:
        return f"{error.error}: {detail}"
    if isinstance(detail, list) and detail:
        parts = [f"{d.get('loc')}: {d.get('message')}" if isinstance(d, dict) else str(d) for d in detail]
        return f"{error.error}: " + "; ".join(parts)
    return error.error


def call_daemon(
    home: Path | None, socket_path: Path | None, call: Callable[[DaemonClient], Awaitable[T]]
) -> T:
    """Run `call` against the daemon; any failure becomes one line on stderr and an exit code."""
    path = resolve_socket(home, socket_path)

    async def run() -> T:
        async with DaemonClient(path) as client:
            return await call(client)

    try:
        return asyncio.run(run())
    except (DaemonUnavailable, VersionMismatch, UntrustedDaemon) as error:
        fail(str(error))
    except httpx.HTTPError as error:
        # Something answered on the socket but not like the daemon (or not in time).
        fail(f"the daemon on {path} did not answer properly: {type(error).__name__}: {error}", EXIT_FAILED)
    except ApiError as error:
        fail(describe_api_error(error), EXIT_BAD_INPUT if 400 <= error.status < 500 else EXIT_FAILED)
