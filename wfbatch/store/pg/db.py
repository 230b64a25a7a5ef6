"""The PostgreSQL backend's connections: a psycopg 3 pool, its transactions and its reads.

Transactions are READ COMMITTED on a pooled connection, and run side by side (SQLite's run one at a
time). What that changes for the SQL is handled where it matters: a read that decides a write locks
its row (`FOR UPDATE`), a cap is a conditional `UPDATE` of a counter row (store/pg/caps.py), and an
acceptance relies on the unique index of its content (store/batches.py). Reads outside a
transaction take a pooled connection in autocommit mode: one statement, one snapshot.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.numeric import FloatLoader
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from wfbatch.store.database import POSTGRES, Dialect, check_url, redacted_url
from wfbatch.store.errors import StoreOpenError
from wfbatch.store.pg.connection import PgConnection, PgConnectionRaw, pg_rows
from wfbatch.store.pg.migrate import migrate_postgres, schema_version

log = logging.getLogger("wfbatch.store")

POOL_SIZE = 8
"""Connections per store: the engine's steps, the API's reads and the delivery worker at once."""

OPEN_TIMEOUT = 30.0
"""Seconds to wait for the first connection: a server that restarts is given time, a wrong URL fails."""

def local_zone() -> str | None:
    """This machine's time zone by its IANA name (TZ, else the /etc/localtime link), if known."""
    named = os.environ.get("TZ", "").lstrip(":")
    if named and "/" in named and not named.startswith("/"):
        return named
    try:
        target = str(Path("/etc/localtime").readlink())
    except OSError:
        return None
    _, found, zone = target.partition("zoneinfo/")
    return zone if found and zone else None


async def _configure(conn: PgConnectionRaw) -> None:
    # SUM() of integers is NUMERIC: read it as float, as SQLite's sums are.
    conn.adapters.register_loader("numeric", FloatLoader)
    # Days are local calendar days (`ledger_day`): the session's time zone is this machine's, not the
    # server's, so `wfbatch costs` groups by the same days the ledger was written with.
    zone = local_zone()
    if zone:
        try:
            await conn.execute("SELECT set_config('TimeZone', %s, false)", (zone,))
        except psycopg.DataError:
            log.warning("PostgreSQL does not know the time zone %s; days follow the server's", zone)


class PostgresDatabase:
    """`SqlDatabase` on a PostgreSQL server: a pool of connections."""

    dialect: Dialect = POSTGRES

    def __init__(self, url: str, pool: AsyncConnectionPool[PgConnectionRaw]) -> None:
        self.url = url
        self._pool = pool

    @property
    def where(self) -> str:
        return redacted_url(self.url)

    @classmethod
    async def open(cls, url: str, *, migrate: bool = False) -> PostgresDatabase:
        """Connect. An empty database is given the schema; an older one is migrated only when
        `migrate` (`wfbatch db migrate`): other daemons of the older wfbatch may still use it."""
        check_url(url)
        pool: AsyncConnectionPool[PgConnectionRaw] = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=POOL_SIZE,
            open=False,
            kwargs={"autocommit": True, "row_factory": pg_rows},
            configure=_configure,
            name="wfbatch",
        )
        try:
            await pool.open(wait=True, timeout=OPEN_TIMEOUT)
        except PoolTimeout:
            await pool.close()
            raise StoreOpenError(
                f"cannot connect to {redacted_url(url)} within {OPEN_TIMEOUT:.0f} s (is the server up,"
                " and the URL's user, password and database right?)"
            ) from None
        db = cls(url, pool)
        try:
            async with pool.connection() as conn:
                await migrate_postgres(conn, db.where, allow_upgrade=migrate)
        except BaseException:
            await pool.close()
            raise
        return db

    async def close(self) -> None:
        await self._pool.close()

    async def version(self) -> int | None:
        async with self._pool.connection() as conn:
            return await schema_version(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgConnection]:
        async with self._pool.connection() as conn, conn.transaction():
            yield PgConnection(conn)

    @asynccontextmanager
    async def writer(self) -> AsyncIterator[PgConnection]:
        async with self._pool.connection() as conn:
            yield PgConnection(conn)

    @asynccontextmanager
    async def dedicated(self) -> AsyncIterator[PgConnectionRaw]:
        """A connection of its own, outside the pool, for as long as the block runs: what a
        session-level advisory lock or a LISTEN needs (a pooled connection goes back after each use)."""
        conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        try:
            yield conn
        finally:
            await conn.close()

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        async with self._pool.connection() as conn:
            return await PgConnection(conn).execute_fetchall(sql, params)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._pool.connection() as conn:
            return (await PgConnection(conn).execute(sql, params)).rowcount

    async def read_aside(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        # A REPEATABLE READ transaction: every query of the list sees one snapshot. PostgreSQL's
        # readers never block its writers, so any pooled connection serves.
        async with self._pool.connection() as conn:
            await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                wrapped = PgConnection(conn)
                return [list(await wrapped.execute_fetchall(sql, params)) for sql, params in queries]
            finally:
                await conn.execute("ROLLBACK")
