"""The SQLite backend's one connection, its transactions and its reads, shared by every aggregate.

One connection in autocommit mode; every multi-statement write runs inside `BEGIN IMMEDIATE` under
one asyncio lock, so concurrent coroutines never interleave their transactions. WAL with
`synchronous=NORMAL`: a killed process loses nothing that was committed (only a power cut can drop
the last transactions, never corrupt the file).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from wfbatch.store.aside import read_aside
from wfbatch.store.database import SQLITE, Dialect, SqlAggregate
from wfbatch.store.errors import SchemaTooNew
from wfbatch.store.schema import MIGRATIONS, SCHEMA_VERSION, step_text

__all__ = ["Database", "SchemaTooNew", "SqliteAggregate"]

log = logging.getLogger("wfbatch.store")


async def _open_reader(path: Path) -> aiosqlite.Connection:
    reader = await aiosqlite.connect(path, isolation_level=None)
    try:
        reader.row_factory = aiosqlite.Row
        await reader.execute("PRAGMA query_only=ON")
        await reader.execute("PRAGMA busy_timeout=10000")
        # One read now opens every file it will need (the database, its -wal and -shm): opened at
        # its first real query instead, a burst of API connections that has used up the process's
        # descriptors could make that query fail and stop the engine ("unable to open database file").
        await reader.execute_fetchall("SELECT count(*) FROM sqlite_master")
    except BaseException:
        await reader.close()
        raise
    return reader


class Database:
    """`SqlDatabase` (store/database.py) on SQLite: the writer connection with its lock, and the
    reader connection: what every aggregate (jobs, batches, ledger, ...) of one `Store` runs on."""

    dialect: Dialect = SQLITE

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self.conn = conn
        # Reads go to a connection of their own: on the writer's they would see whatever transaction
        # another coroutine has half done (a budget check once counted a release without its charge).
        # In WAL mode the reader sees only committed states and never waits for the writer.
        self._reader = conn  # until `open` has migrated the schema
        self.path = path
        self.write_lock = asyncio.Lock()
        """Held for every write on `conn`: a transaction, or one autocommitted statement."""

    @classmethod
    async def open(cls, path: Path) -> Database:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("PRAGMA busy_timeout=10000")
        db = cls(conn, path)
        try:
            await db._migrate()
            db._reader = await _open_reader(path)
        except BaseException:
            await conn.close()
            raise
        return db

    @property
    def where(self) -> str:
        return str(self.path)

    async def close(self) -> None:
        if self._reader is not self.conn:
            await self._reader.close()
        await self.conn.close()

    async def _migrate(self) -> None:
        version = await self.version()
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"{self.path} has schema version {version}; this wfbatch knows up to {SCHEMA_VERSION}. "
                "Upgrade wfbatch."
            )
        for target in range(version, SCHEMA_VERSION):
            async with self.transaction():
                for statement in _split_sql(step_text(MIGRATIONS[target], SQLITE)):
                    await self.conn.execute(statement)
                await self.conn.execute(f"PRAGMA user_version={target + 1}")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self.write_lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                # SQLite has already rolled back after some errors (SQLITE_FULL among them): a second
                # ROLLBACK would fail and hide the error that matters.
                if self.conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        await self.conn.execute("ROLLBACK")
                raise
            await self.conn.execute("COMMIT")

    @asynccontextmanager
    async def writer(self) -> AsyncIterator[aiosqlite.Connection]:
        """The writer connection under its lock, for statements that each commit on their own."""
        async with self.write_lock:
            yield self.conn

    async def version(self) -> int:
        async with self.conn.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        """The rows of one read, as last committed (never another coroutine's open transaction).
        Inside a transaction, read on its own connection instead, to see its own writes."""
        # Executed and read in ONE call on the connection's thread: one statement, one snapshot.
        return list(await self._reader.execute_fetchall(sql, params))

    async def read_aside(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        """Long reads on a connection of their own (`aside`); when one cannot be opened (out of file
        descriptors: a flood of API connections at start), on the shared reader instead — slower
        for every answer meanwhile, but a daemon that stops for want of a descriptor is worse."""
        try:
            return await read_aside(self.path, queries)
        except sqlite3.OperationalError as error:
            log.warning("reading aside failed (%s); reading on the shared reader", error)
            return [await self.fetchall(sql, params) for sql, params in queries]

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Row | None:
        """The first row (for queries that return one: aggregates, lookups by key, LIMIT 1)."""
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One autocommitted statement; returns the number of rows changed."""
        async with self.write_lock, self.conn.execute(sql, params) as cursor:
            return cursor.rowcount


def _split_sql(script: str) -> list[str]:
    """The statements of a migration script, one each (a trigger's body holds `;` of its own)."""
    statements: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending.strip())
            pending = ""
    return statements


# The aggregates' base lives with the protocol it runs on; its old name stays importable.
SqliteAggregate = SqlAggregate
