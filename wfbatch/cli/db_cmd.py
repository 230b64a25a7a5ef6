"""`wfbatch db`: the store's schema version, and its migration."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from wfbatch.cli.common import fail, home_option, open_configured_store, settings_from_flags, usable_home
from wfbatch.settings import Settings
from wfbatch.store import StoreOpenError, describe_store, schema_versions


@click.group("db")
def db_command() -> None:
    """The store's database: HOME's SQLite file, or the PostgreSQL database of `[store] database_url`.

    SQLite is migrated whenever it is opened. PostgreSQL, shared by several daemons, is migrated
    only by `wfbatch db migrate`: stop the daemons of the older wfbatch first; a daemon refuses to
    start on a schema older or newer than its own."""


@db_command.command("version")
@home_option
def version_command(home: Path | None) -> None:
    """Print the database's schema version and this wfbatch's."""
    settings = settings_from_flags(home)
    layout = usable_home(settings)
    where = describe_store(settings.store.url(), layout.db)
    try:
        found, known = asyncio.run(schema_versions(settings.store.url(), layout.db))
    except StoreOpenError as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot read {where}: {error}")
    shown = "none (an empty database)" if found is None else str(found)
    click.echo(f"{where}: schema version {shown}; this wfbatch: {known}")


@db_command.command("migrate")
@home_option
def migrate_command(home: Path | None) -> None:
    """Bring the database's schema to this wfbatch's version (a new database: create it)."""
    settings = settings_from_flags(home)
    found, known = asyncio.run(_migrate(settings))
    where = describe_store(settings.store.url(), usable_home(settings).db)
    if found == known:
        click.echo(f"{where}: schema version {known}, nothing to do")
    else:
        before = "nothing" if found is None else f"version {found}"
        click.echo(f"{where}: migrated from {before} to version {known}")


async def _migrate(settings: Settings) -> tuple[int | None, int]:
    layout = usable_home(settings)
    try:
        found, known = await schema_versions(settings.store.url(), layout.db)
    except StoreOpenError as error:
        fail(str(error))
    store = await open_configured_store(settings, layout, migrate=True)
    await store.close()
    return found, known
