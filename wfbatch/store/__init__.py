"""Persistence: the single source of truth for batches, jobs, attempts, money and the cache index.

`StoreApi` (store/interface.py) is what the rest of wfbatch uses: `store.jobs`, `store.batches`,
`store.counters`, `store.drafts`, `store.ledger`, `store.cache`, `store.pauses`, `store.outbox`,
`store.remote_batches`. `Store` is its SQLite implementation; `open_store` opens whichever backend
the configuration names (PostgreSQL: store/pg/, imported only then)."""

from wfbatch.store.deliveries import IMAGE, MANIFEST
from wfbatch.store.errors import BackendMissing, SchemaTooNew, SchemaTooOld, StoreOpenError
from wfbatch.store.fleet import DaemonRow, Fleet, FleetRecords, Wanted
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
from wfbatch.store.opening import describe_store, fleet_for, open_store, schema_versions
from wfbatch.store.remote_batches import LIVE_STEPS, RemoteBatchRow, Step
from wfbatch.store.rows import (
    CLEARED_ERROR,
    ERROR_COLUMNS,
    AttemptRecord,
    AttemptRow,
    BatchRow,
    CapReached,
    CostLine,
    CounterCheck,
    DeliveryRow,
    JobRow,
    NewJob,
    Notice,
    NotificationRow,
    OutcomeRecord,
    PossibleDuplicate,
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
    "BackendMissing",
    "BatchRow",
    "BatchesApi",
    "CacheApi",
    "CapReached",
    "CostLine",
    "CounterCheck",
    "CountersApi",
    "DaemonRow",
    "DeliveryRow",
    "DraftsApi",
    "Fleet",
    "FleetRecords",
    "JobRow",
    "JobsApi",
    "LedgerApi",
    "NewJob",
    "Notice",
    "NotificationRow",
    "OutboxApi",
    "OutcomeRecord",
    "PausesApi",
    "PossibleDuplicate",
    "RemoteBatchRow",
    "RemoteBatchesApi",
    "Reuse",
    "SchemaTooNew",
    "SchemaTooOld",
    "Step",
    "Store",
    "StoreApi",
    "StoreOpenError",
    "Wanted",
    "describe_store",
    "fleet_for",
    "ledger_day",
    "open_store",
    "schema_versions",
    "spec_from_json",
    "spec_to_json",
]
