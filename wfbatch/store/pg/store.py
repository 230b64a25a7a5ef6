"""The PostgreSQL backend of `StoreApi`: the same aggregates as SQLite's `Store`, on a
`PostgresDatabase`, with the ledger's reservations as counter-row updates (store/pg/caps.py)."""

from __future__ import annotations

from wfbatch.store.batches import SqliteBatches
from wfbatch.store.cache import SqliteCache
from wfbatch.store.counters import SqliteCounters
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
from wfbatch.store.pauses import SqlitePauses
from wfbatch.store.pg.caps import PostgresLedger
from wfbatch.store.pg.db import PostgresDatabase
from wfbatch.store.remote_batches import SqliteRemoteBatches


class PostgresStore:
    """`StoreApi` on PostgreSQL. The aggregates' classes are the SQLite backend's (their SQL is
    written once, store/database.py); only what must differ in meaning is PostgreSQL's own."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db
        self.path = db.where
        self.jobs: JobsApi = SqliteJobs(db)
        self.batches: BatchesApi = SqliteBatches(db)
        self.counters: CountersApi = SqliteCounters(db)
        self.drafts: DraftsApi = SqliteDrafts(db)
        self.ledger: LedgerApi = PostgresLedger(db)
        self.cache: CacheApi = SqliteCache(db)
        self.pauses: PausesApi = SqlitePauses(db)
        self.outbox: OutboxApi = SqliteOutbox(db)
        self.remote_batches: RemoteBatchesApi = SqliteRemoteBatches(db)

    @classmethod
    async def connect(cls, url: str, *, migrate: bool = False) -> PostgresStore:
        return cls(await PostgresDatabase.open(url, migrate=migrate))

    async def close(self) -> None:
        await self.db.close()

    async def probe_write(self) -> None:
        """Commit a write that needs fresh room: raises while the server's disk is full."""
        async with self.db.transaction() as conn:
            await conn.execute("INSERT INTO space_probe (data) VALUES (decode(repeat('00', 65536), 'hex'))")
            await conn.execute("DELETE FROM space_probe")
