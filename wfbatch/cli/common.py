"""Pieces every command shares: settings from flags, JSON output, exit codes."""

from __future__ import annotations

import datetime as dt
import errno
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from wfbatch.core.when import BadMoment, parse_at
from wfbatch.home import HomeLayout
from wfbatch.protocol import MAX_ID
from wfbatch.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from wfbatch.store import StoreApi

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_STOPPED = 3

class FiniteFloatRange(click.FloatRange):
    """click's FloatRange lets `nan` through (it compares false with any bound) and `inf` past a
    minimum; a number of credits must be finite."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def parse_credits(text: str) -> float | None:
    """CREDITS as typed on the command line: a finite number >= 0, or `none` (no cap)."""
    if text.strip().lower() == "none":
        return None
    try:
        credits = float(text)
    except ValueError:
        credits = math.nan
    if not math.isfinite(credits) or credits < 0:
        fail(f"CREDITS is a finite number of at least 0, or `none`; not {text[:40]!r}")
    return credits


JOB_ID = click.IntRange(1, MAX_ID)
"""A job id on the command line: what the store can hold (a signed 64-bit rowid)."""

home_option = click.option(
    "--home",
    # Checked by `usable_home`, not click: its refusal is a three-line usage error, not one line.
    type=click.Path(path_type=Path),
    default=None,
    help="wfbatch's folder (default: $WFBATCH_HOME, else the platform's user data folder).",
)


prompt_files_argument = click.argument(
    "files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path)
)
provider_option = click.option(
    "--provider", default=None, help="Provider for entries that name none (default: config)."
)
budget_option = click.option(
    "--budget",
    type=FiniteFloatRange(min=0),
    default=None,
    help="Credits each batch may spend, in its provider's unit (overrides the file's).",
)
"""One definition for `run`, `plan` and `submit`: the same range as `wfbatch budget` and the API."""


class MomentType(click.ParamType[dt.datetime, Any]):
    """`--at`: HH:MM (the next such local time) or an ISO 8601 date-time (local without an offset)."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dt.datetime:
        if isinstance(value, dt.datetime):
            return value
        try:
            return parse_at(str(value))
        except BadMoment as error:
            self.fail(str(error), param, ctx)


at_option = click.option(
    "--at",
    type=MomentType(),
    default=None,
    help="Start no job before this time: HH:MM (the next such local time) or an ISO 8601 date-time;"
    " the batch is accepted and counted now (overrides the file's not_before).",
)


def settings_from_flags(home: Path | None, **overrides: Any) -> Settings:
    """Build the settings, turning a configuration mistake into one clear line and exit code 2."""
    try:
        return load_settings(home, **{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as error:
        fail(f"configuration error: {error}")


def usable_home(settings: Settings) -> HomeLayout:
    """HOME's folders, created if missing and checked writable: a HOME that is a file, under /proc
    or read-only becomes one line naming it and the problem (exit 2), not a traceback from deep
    inside SQLite or mkdir."""
    layout = HomeLayout(settings.home)
    try:
        layout.ensure()
        # Creating a file is the only honest test: os.access says yes to root on a read-only mount.
        with tempfile.TemporaryFile(dir=layout.root):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        if error.errno in (errno.EEXIST, errno.ENOTDIR):
            reason = "a file is in the way (HOME and its sub-folders must be folders)"
        fail(f"{settings.home}: cannot be used as wfbatch's home: {reason}")
    return layout


async def open_configured_store(
    settings: Settings, layout: HomeLayout, *, migrate: bool = False
) -> StoreApi:
    """The store `[store]` names (HOME's SQLite file by default); a store that cannot be opened as
    it is (no driver, a schema to migrate, a server out of reach) is one line and exit code 2."""
    # Imported here: the commands that talk to a daemon (status, jobs) never load a store.
    from wfbatch.store import StoreOpenError, open_store

    try:
        return await open_store(settings.store.url(), layout.db, migrate=migrate)
    except StoreOpenError as error:
        fail(str(error))


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    click.echo(f"wfbatch: {message}", err=True)
    sys.exit(code)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))
