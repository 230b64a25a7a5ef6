"""SQLite persistence: the single source of truth for batches, jobs, attempts and the cache index."""

from wfbatch.store.ledger import Ledger
from wfbatch.store.rows import AttemptRecord, AttemptRow, BatchRow, JobRow, NewJob, OutcomeRecord
from wfbatch.store.store import Reuse, Store

__all__ = [
    "AttemptRecord",
    "AttemptRow",
    "BatchRow",
    "JobRow",
    "Ledger",
    "NewJob",
    "OutcomeRecord",
    "Reuse",
    "Store",
]
