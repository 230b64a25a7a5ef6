"""SQLite persistence: the single source of truth for batches, jobs, attempts and the cache index."""

from wfbatch.store.ledger import Ledger
from wfbatch.store.rows import AttemptRow, BatchRow, JobRow, NewJob
from wfbatch.store.store import Reuse, Store

__all__ = ["AttemptRow", "BatchRow", "JobRow", "Ledger", "NewJob", "Reuse", "Store"]
