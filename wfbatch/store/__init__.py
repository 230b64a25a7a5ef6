"""SQLite persistence: the single source of truth for batches, jobs, attempts and the cache index."""

from wfbatch.store.deliveries import Deliveries
from wfbatch.store.ledger import Ledger
from wfbatch.store.rows import (
    AttemptRecord,
    AttemptRow,
    BatchRow,
    DeliveryRow,
    JobRow,
    NewJob,
    Notice,
    NotificationRow,
    OutcomeRecord,
)
from wfbatch.store.store import Reuse, Store

__all__ = [
    "AttemptRecord",
    "AttemptRow",
    "BatchRow",
    "Deliveries",
    "DeliveryRow",
    "JobRow",
    "Ledger",
    "NewJob",
    "Notice",
    "NotificationRow",
    "OutcomeRecord",
    "Reuse",
    "Store",
]
