"""A new batch's jobs inserted in one statement, its per-state counters updated once, not per row.

The `job_counts_insert` trigger (migration 9) upserts a `job_counts` row for every job inserted: on
a 100,000-job file that was ~40 % of the insert (see docs/benchmarks.md). Every job of a new batch
is a new row of a new `batch_id`, so what the trigger would add up is one `COUNT(*)` per provider
and state of that batch. For a large batch the trigger is dropped, the jobs inserted, the counts
added from the table itself, and the trigger re-created from its own stored text, all inside the
caller's write transaction: DDL is transactional in SQLite, so an error, a cancellation or a
`kill -9` anywhere before COMMIT leaves the trigger and the counters exactly as they were, and no
other connection ever sees the table without its trigger (WAL readers see the last commit, writers
wait for the lock). Every other trigger on `jobs` still fires per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiosqlite

COUNTS_TRIGGER = "job_counts_insert"
BULK_MIN_JOBS = 1_000
"""Below this the per-row trigger costs less than a schema change: every connection's prepared
statements are re-prepared once after one, and small files (the inbox's usual) need no help."""

JOB_COLUMNS = (
    "uid, batch_id, idx, line, user_id, provider, spec, prompt, tags,"
    " cache_key, priority, state, final_spec, created_at, updated_at"
)
_INSERT_JOBS = f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
_ADD_COUNTS = (
    "INSERT INTO job_counts (batch_id, provider, state, n)"
    " SELECT batch_id, provider, state, COUNT(*) FROM jobs WHERE batch_id = ? GROUP BY provider, state"
    " ON CONFLICT (batch_id, provider, state) DO UPDATE SET n = n + excluded.n"
)


async def insert_new_batch_jobs(
    conn: aiosqlite.Connection, batch_id: str, rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert `rows` (in `JOB_COLUMNS` order), all jobs of the batch `batch_id` that has none yet.
    Must run inside a write transaction (`Store.transaction`)."""
    trigger_sql = await _trigger_sql(conn) if len(rows) >= BULK_MIN_JOBS else None
    if trigger_sql is None:  # small batch, or no counters to keep (a database without the trigger)
        await conn.executemany(_INSERT_JOBS, rows)
        return
    await conn.execute(f"DROP TRIGGER {COUNTS_TRIGGER}")
    await conn.executemany(_INSERT_JOBS, rows)
    await conn.execute(_ADD_COUNTS, (batch_id,))
    await conn.execute(trigger_sql)


async def _trigger_sql(conn: aiosqlite.Connection) -> str | None:
    async with conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?", (COUNTS_TRIGGER,)
    ) as cursor:
        row = await cursor.fetchone()
    return str(row[0]) if row is not None else None
