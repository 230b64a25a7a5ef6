"""What every aggregate of the store runs on: a `SqlDatabase`, whichever backend holds the data.

Two implementations:
- SQLite (store/db.py): one file, one writer connection whose transactions are `BEGIN IMMEDIATE`
  under an asyncio lock, a reader connection of its own. The default: zero setup.
- PostgreSQL (store/pg/db.py): a psycopg 3 connection pool; transactions are READ COMMITTED, so
  a read that decides a write locks its row (`FOR UPDATE`) or is a conditional `UPDATE` itself.

The aggregates (jobs.py, batches.py, ledger.py, ...) are written once, in SQLite's SQL: `?`
placeholders, `INSERT OR IGNORE`, `json_extract`. The PostgreSQL connection translates those few
spellings (store/pg/dialect.py). SQL that must differ in meaning, not just spelling, asks
`db.dialect` and carries both texts side by side (see `ledger.py`'s caps, `cost_reads.py`'s days):

    if self._db.dialect == POSTGRES:
        ...   # PostgreSQL's statement
    else:
        ...   # SQLite's

A connection that must outlive a transaction (a session advisory lock, LISTEN) is
`PostgresDatabase.dedicated()`: a connection of its own, outside the pool.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl, urlsplit

from wfbatch.store.errors import StoreOpenError

Dialect = Literal["sqlite", "postgres"]
SQLITE: Dialect = "sqlite"
POSTGRES: Dialect = "postgres"


class SqlRow(Protocol):
    """A row by column name (`row["id"]`) or position (`row[0]`)."""

    def __getitem__(self, key: Any, /) -> Any: ...


class SqlCursor(Protocol):
    async def fetchone(self) -> Any: ...

    async def fetchall(self) -> Iterable[Any]: ...

    @property
    def rowcount(self) -> int: ...


class SqlCall(Protocol):
    """`conn.execute(...)`: awaited for its cursor, or entered (`async with ... as cursor`)."""

    def __await__(self) -> Generator[Any, None, SqlCursor]: ...

    async def __aenter__(self) -> SqlCursor: ...

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any, /) -> Any: ...


class SqlConnection(Protocol):
    """The connection of one open transaction: what `SqlDatabase.transaction()` yields."""

    # (sql, parameters): loosely typed, so that aiosqlite's connection is one as it is.
    def execute(self, *args: Any) -> SqlCall: ...

    async def executemany(self, *args: Any) -> Any: ...

    async def execute_fetchall(self, *args: Any) -> Iterable[Any]: ...


class SqlDatabase(Protocol):
    @property
    def dialect(self) -> Dialect: ...

    @property
    def where(self) -> str:
        """What to name in a message: the SQLite file, or the PostgreSQL database (no password)."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[SqlConnection]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        ...

    def writer(self) -> AbstractAsyncContextManager[SqlConnection]:
        """A connection for statements that each commit on their own (no transaction around them)."""
        ...

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """The rows of one read, as last committed (never another coroutine's open transaction)."""
        ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    async def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One autocommitted statement; the number of rows it changed."""
        ...

    async def read_aside(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        """Long reads, all in one snapshot, without holding up the other reads and writes."""
        ...

    async def close(self) -> None: ...



def redacted_url(url: str) -> str:
    """A database URL without its password, for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or dict(parse_qsl(parts.query)).get("host", "localhost")
    return f"postgresql://{parts.username or ''}@{host}{parts.path}"


def check_url(url: str) -> None:
    """Refuse a URL libpq cannot read, without repeating it (it may hold a password)."""
    from psycopg import ProgrammingError, conninfo

    try:
        conninfo.conninfo_to_dict(url)
    except ProgrammingError:
        raise StoreOpenError(
            f"[store] database_url ({redacted_url(url)}) is not a URL PostgreSQL reads: expected"
            " postgresql://user:password@host:port/dbname (a socket folder as ?host=/path)"
        ) from None


async def insert_id(conn: SqlConnection, dialect: Dialect, sql: str, params: Sequence[Any]) -> int | None:
    """Run an INSERT of at most one row: the new row's id, or None when it inserted nothing (an
    `INSERT OR IGNORE` that met its unique index). PostgreSQL tells the id by `RETURNING id`;
    SQLite by the cursor's `lastrowid` (its RETURNING needs SQLite 3.35, newer than the library
    some systems' Python is linked with)."""
    if dialect == POSTGRES:
        async with conn.execute(sql + " RETURNING id", params) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else None
    async with conn.execute(sql, params) as cursor:
        return int(getattr(cursor, "lastrowid", 0) or 0) if cursor.rowcount > 0 else None


def for_update(db: SqlDatabase) -> str:
    """What a read that decides a write appends: ` FOR UPDATE` on PostgreSQL, where another
    transaction could otherwise change the row between the read and the write (READ COMMITTED);
    nothing on SQLite, whose write transaction (`BEGIN IMMEDIATE`) already shuts every other out."""
    return " FOR UPDATE" if db.dialect == POSTGRES else ""


class SqlAggregate:
    """Base of one aggregate (jobs, batches, ...): its reads, writes and transactions all go to the
    one `SqlDatabase` it shares with the others, whichever backend that is."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    @property
    def path(self) -> str:
        """Where the data is, for messages (a file, or a PostgreSQL database without password)."""
        return self._db.where

    def transaction(self) -> AbstractAsyncContextManager[SqlConnection]:
        return self._db.transaction()

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self._db.fetchall(sql, params)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return await self._db.fetchone(sql, params)

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        return await self._db.write(sql, params)

    async def _read_aside(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        return await self._db.read_aside(queries)
