"""The SQLite store: one object per aggregate on one shared database.

`Store` implements `StoreApi` (store/interface.py), the interface the engine and the daemon use:
`store.jobs`, `store.batches`, `store.ledger`, ... Each aggregate lives in a module of its own; all
of them run on one `Database` (store/db.py): one writer connection whose transactions are
`BEGIN IMMEDIATE` under one asyncio lock, and a reader connection of its own.

The aggregate classes keep their `Sqlite` names, but their SQL is written for any `SqlDatabase`
(store/database.py): `PostgresStore` (store/pg/store.py) runs the same classes on PostgreSQL, with
its own ledger reservations (store/pg/caps.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiosqlite

from wfbatch.store.batches import SqliteBatches
from wfbatch.store.cache import SqliteCache
from wfbatch.store.counters import SqliteCounters
from wfbatch.store.db import Database
from wfbatch.store.deliveries import SqliteOutbox
from wfbatch.store.drafts import SqliteDrafts
from wfbatch.store.interface import (
    BatchesApi,
    CacheApi,
    CountersApi,
    DraftsApi,
    JobsApi,
    LedgerApi,
    OutboxApi,
    PausesApi,
    RemoteBatchesApi,
)
from wfbatch.store.jobs import SqliteJobs
from wfbatch.store.ledger import SqliteLedger
from wfbatch.store.pauses import SqlitePauses
from wfbatch.store.remote_batches import SqliteRemoteBatches


class Store:
    """The SQLite backend of `StoreApi`. Each aggregate is typed as its interface, so nothing
    outside store/ can come to depend on more than a second backend offers."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.path = db.path
        self.jobs: JobsApi = SqliteJobs(db)
        self.batches: BatchesApi = SqliteBatches(db)
        self.counters: CountersApi = SqliteCounters(db)
        self.drafts: DraftsApi = SqliteDrafts(db)
        self.ledger: LedgerApi = SqliteLedger(db)
        self.cache: CacheApi = SqliteCache(db)
        self.pauses: PausesApi = SqlitePauses(db)
        self.outbox: OutboxApi = SqliteOutbox(db)
        self.remote_batches: RemoteBatchesApi = SqliteRemoteBatches(db)

    @classmethod
    async def open(cls, path: Path) -> Store:
        return cls(await Database.open(path))

    async def close(self) -> None:
        await self.db.close()

    async def probe_write(self) -> None:
        """Commit a write that needs fresh pages: raises SQLITE_FULL while the disk is full."""
        async with self.transaction() as conn:
            await conn.execute("INSERT INTO space_probe (data) VALUES (zeroblob(65536))")
            await conn.execute("DELETE FROM space_probe")

    # Raw SQL on the shared database, for what is SQLite's own (benchmarks, tests that set up or
    # inspect rows); not part of `StoreApi`.

    def transaction(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        return self.db.transaction()

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        return await self.db.fetchall(sql, params)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Row | None:
        return await self.db.fetchone(sql, params)
