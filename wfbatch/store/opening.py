"""Opening the store the configuration names: this HOME's SQLite file, or a PostgreSQL database.

psycopg is imported only here, and only for a postgresql:// URL: the default install (SQLite)
neither needs nor loads it (`pip install 'wfbatch[postgres]'` adds it)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from wfbatch.store.database import check_url, redacted_url
from wfbatch.store.errors import BackendMissing, StoreOpenError
from wfbatch.store.fleet import Fleet
from wfbatch.store.interface import StoreApi
from wfbatch.store.store import Store

INSTALL_HINT = "pip install 'wfbatch[postgres]'"


async def open_store(database_url: str | None, sqlite_path: Path, *, migrate: bool = False) -> StoreApi:
    """The store at `database_url` (a postgresql:// URL), or the SQLite file at `sqlite_path`.
    SQLite migrates at open, always; PostgreSQL only when `migrate` (see store/pg/migrate.py)."""
    if not database_url:
        return await Store.open(sqlite_path)
    try:
        from wfbatch.store.pg.store import PostgresStore
    except ImportError as error:
        raise BackendMissing(
            f"[store] database_url names PostgreSQL, but its driver is not installed ({error.name}):"
            f" {INSTALL_HINT}"
        ) from None
    return await PostgresStore.connect(database_url, migrate=migrate)


def fleet_for(store: StoreApi, lease_timeout: float, wake: Callable[[], None]) -> Fleet | None:
    """On PostgreSQL, this daemon among others (store/pg/leases.py): the accounts it serves, and its
    writes about jobs fenced on them. None on SQLite: the one daemon of the HOME serves everything."""
    if isinstance(store, Store):
        return None
    from wfbatch.store.pg.leases import PgFleet
    from wfbatch.store.pg.store import PostgresStore

    if not isinstance(store, PostgresStore):
        return None
    fleet = PgFleet(store.db, lease_timeout=lease_timeout, wake=wake)
    store.jobs.fence(fleet.id)
    store.ledger.fence(fleet.id)
    return fleet


def describe_store(database_url: str | None, sqlite_path: Path) -> str:
    """Where the store is, for messages: the SQLite file, or the PostgreSQL URL without password."""
    if not database_url:
        return str(sqlite_path)
    return redacted_url(database_url)


async def schema_versions(database_url: str | None, sqlite_path: Path) -> tuple[int | None, int]:
    """(the database's schema version, None when it has none yet; this wfbatch's version)."""
    from wfbatch.store.schema import SCHEMA_VERSION

    if not database_url:
        import aiosqlite

        if not await asyncio.to_thread(sqlite_path.exists):
            return None, SCHEMA_VERSION
        async with aiosqlite.connect(sqlite_path) as lite, lite.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        return (int(row[0]) if row else 0), SCHEMA_VERSION
    try:
        import psycopg

        from wfbatch.store.pg.migrate import schema_version
    except ImportError as error:
        raise BackendMissing(f"PostgreSQL's driver is not installed ({error.name}): {INSTALL_HINT}") from None
    check_url(database_url)
    try:
        conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True, connect_timeout=30)
    except psycopg.OperationalError as error:
        raise StoreOpenError(f"cannot connect to {redacted_url(database_url)}: {error}") from None
    async with conn:
        return await schema_version(conn), SCHEMA_VERSION
