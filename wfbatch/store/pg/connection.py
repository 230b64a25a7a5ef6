"""A psycopg connection seen as the aggregates see SQLite's (aiosqlite's shape): `execute` awaited
for a cursor or entered with `async with`, rows read by column name or position, `rowcount`. Every
statement passes through store/pg/dialect.py on its way."""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from typing import Any

import psycopg
from psycopg.rows import RowMaker

from wfbatch.store.pg.dialect import to_postgres

PgConnectionRaw = psycopg.AsyncConnection[Any]


class PgRow:
    """A row by column name or by position, as SQLite's rows are read."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: Any, /) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Any:
        return iter(self._values)

    def keys(self) -> list[str]:
        return list(self._index)


def pg_rows(cursor: psycopg.AsyncCursor[Any]) -> RowMaker[PgRow]:
    index = {column.name: i for i, column in enumerate(cursor.description or ())}

    def make(values: Sequence[Any]) -> PgRow:
        return PgRow(values, index)

    return make


class PgCursor:
    """What the aggregates read of a cursor: its rows and how many rows a statement changed."""

    def __init__(self, cursor: psycopg.AsyncCursor[Any]) -> None:
        self._cursor = cursor

    async def fetchone(self) -> Any:
        return await self._cursor.fetchone() if self._cursor.description else None

    async def fetchall(self) -> list[Any]:
        return await self._cursor.fetchall() if self._cursor.description else []

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount


class PgCall:
    """One statement: awaited for its cursor, or entered with `async with` (aiosqlite's shape)."""

    def __init__(self, conn: PgConnectionRaw, sql: str, params: Iterable[Any]) -> None:
        self._conn, self._sql, self._params = conn, sql, list(params)

    async def _run(self) -> PgCursor:
        return PgCursor(await self._conn.execute(to_postgres(self._sql), self._params))

    def __await__(self) -> Generator[Any, None, PgCursor]:
        return self._run().__await__()

    async def __aenter__(self) -> PgCursor:
        return await self._run()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any, /) -> None:
        return None


class PgConnection:
    """A pooled psycopg connection, seen as the aggregates see SQLite's."""

    def __init__(self, conn: PgConnectionRaw) -> None:
        self.raw = conn

    def execute(self, sql: str, parameters: Iterable[Any] = (), /) -> PgCall:
        return PgCall(self.raw, sql, parameters)

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]], /) -> None:
        async with self.raw.cursor() as cursor:
            await cursor.executemany(to_postgres(sql), [list(p) for p in parameters])

    async def execute_fetchall(self, sql: str, parameters: Iterable[Any] = (), /) -> list[Any]:
        cursor = await self.raw.execute(to_postgres(sql), list(parameters))
        return await cursor.fetchall() if cursor.description else []
