"""Long reads on a connection of their own, in a worker thread.

The store's shared aiosqlite connection runs one statement at a time on one thread: a full scan
of a million jobs on it (the start-up counter check, the manifests' reconcile) held every API
answer and engine step behind it for seconds. A second connection reads a WAL snapshot without
taking the write lock, and `sqlite3` releases the GIL while it steps, so the event loop goes on."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Query = tuple[str, Sequence[Any]]


def _read(path: Path, queries: Sequence[Query]) -> list[list[sqlite3.Row]]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA query_only=ON")
        conn.execute("PRAGMA busy_timeout=10000")
        # One read transaction: every query sees the same committed state.
        conn.execute("BEGIN")
        try:
            return [conn.execute(sql, params).fetchall() for sql, params in queries]
        finally:
            conn.execute("COMMIT")
    finally:
        conn.close()


async def read_aside(path: Path, queries: Sequence[Query]) -> list[list[sqlite3.Row]]:
    """The rows of each query, all read in one snapshot, off the shared connection."""
    return await asyncio.to_thread(_read, path, queries)
