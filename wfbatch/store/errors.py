"""What opening a store can refuse, whichever the backend."""

from __future__ import annotations


class StoreOpenError(RuntimeError):
    """The store cannot be used as it is; the message says what to do."""


class SchemaTooNew(StoreOpenError):
    """The database was written by a newer wfbatch than this one."""


class SchemaTooOld(StoreOpenError):
    """The database needs `wfbatch db migrate` before this wfbatch uses it."""


class BackendMissing(StoreOpenError):
    """The database URL names a backend whose driver is not installed."""
