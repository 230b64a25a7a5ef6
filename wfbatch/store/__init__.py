"""Persistence: the single source of truth for batches, jobs, attempts, money and the cache index.

`StoreApi` (store/interface.py) is what the rest of wfbatch uses: `store.jobs`, `store.batches`,
`store.counters`, `store.drafts`, `store.ledger`, `store.cache`, `store.pauses`, `store.outbox`,
`store.remote_batches`. `Store` is its SQLite implementation."""

from wfbatch.store.deliveries import IMAGE, MANIFEST
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
    StoreApi,
)
from wfbatch.store.ledger import ledger_day
from wfbatch.store.remote_batches import LIVE_STEPS, RemoteBatchRow, Step
from wfbatch.store.rows import (
    CLEARED_ERROR,
    ERROR_COLUMNS,
    AttemptRecord,
    AttemptRow,
    BatchRow,
    CapReached,
    CounterCheck,
    DeliveryRow,
    JobRow,
    NewJob,
    Notice,
    NotificationRow,
    OutcomeRecord,
    Reuse,
    spec_from_json,
    spec_to_json,
)
from wfbatch.store.store import Store

__all__ = [
    "CLEARED_ERROR",
    "ERROR_COLUMNS",
    "IMAGE",
    "LIVE_STEPS",
    "MANIFEST",
    "AttemptRecord",
    "AttemptRow",
    "BatchRow",
    "BatchesApi",
    "CacheApi",
    "CapReached",
    "CounterCheck",
    "CountersApi",
    "DeliveryRow",
    "DraftsApi",
    "JobRow",
    "JobsApi",
    "LedgerApi",
    "NewJob",
    "Notice",
    "NotificationRow",
    "OutboxApi",
    "OutcomeRecord",
    "PausesApi",
    "RemoteBatchRow",
    "RemoteBatchesApi",
    "Reuse",
    "Step",
    "Store",
    "StoreApi",
    "ledger_day",
    "spec_from_json",
    "spec_to_json",
]
