"""A new batch's jobs inserted in one statement, its per-state counters updated once, not per row.

Migration 9 put two AFTER INSERT triggers on `jobs`: `job_counts_insert` upserts a `job_counts` row
for every job, and `wait_totals_insert` adds a started job's wait. On a 100,000-job file they were
about half of the insert, and the second one even though it never fires for a new job: SQLite
runs a trigger's program for every row before its WHEN says no (docs/benchmarks.md, "Ingest").

For a large batch both are dropped, the jobs inserted, each trigger's effect applied once, and
both re-created from their own stored text, all inside the caller's write transaction:
- `job_counts_insert`: every job of a new batch is a new row of a new `batch_id`, so what it would
  add up is one `COUNT(*)` per provider and state of that batch, read from the table itself;
- `wait_totals_insert`: nothing to apply, a new job has no `started_at` (not among the columns
  inserted, so NULL).
DDL is transactional in SQLite: an error, a cancellation or a `kill -9` anywhere before COMMIT
leaves the triggers and the counters exactly as they were, and no other connection ever sees the
table without them (WAL readers see the last commit, writers wait for the lock). If `jobs` has any
INSERT trigger besides these two (a later migration), the rows are inserted one by one with every
trigger firing: whoever adds one adds its effect here before the bulk path can be used again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from wfbatch.store.database import SQLITE, Dialect, SqlConnection

COUNTS_TRIGGER = "job_counts_insert"
WAITS_TRIGGER = "wait_totals_insert"
BULK_MIN_JOBS = 1_000
"""Below this the per-row triggers cost less than a schema change: every connection's prepared
statements are re-prepared once after one, and small files (the inbox's usual) need no help."""

JOB_COLUMNS = (
    "uid, batch_id, idx, line, user_id, provider, spec, prompt, tags,"
    " cache_key, priority, state, final_spec, created_at, updated_at"
)
_INSERT_JOBS = f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
_ADD_COUNTS = (
    "INSERT INTO job_counts (batch_id, provider, state, n)"
    " SELECT batch_id, provider, state, COUNT(*) FROM jobs WHERE batch_id = ? GROUP BY provider, state"
    " ON CONFLICT (batch_id, provider, state) DO UPDATE SET n = job_counts.n + excluded.n"
)
_ON_INSERT = re.compile(r"\bINSERT\s+ON\b", re.IGNORECASE)
_BODY = re.compile(r"\bBEGIN\b", re.IGNORECASE)


async def insert_new_batch_jobs(
    conn: SqlConnection, batch_id: str, rows: Sequence[tuple[Any, ...]], dialect: Dialect = SQLITE
) -> None:
    """Insert `rows` (in `JOB_COLUMNS` order), all jobs of the batch `batch_id` that has none yet.
    Must run inside a write transaction (`SqlDatabase.transaction`). On PostgreSQL the rows go in
    multi-row statements instead: PostgreSQL counts them per statement (its `job_counts_insert` is a
    statement trigger, store/pg/baseline.py), and no DDL runs on a database others share."""
    if dialect != SQLITE:
        await _insert_rows_at_once(conn, rows)
        return
    triggers = await _insert_triggers(conn) if len(rows) >= BULK_MIN_JOBS else {}
    if set(triggers) != {COUNTS_TRIGGER, WAITS_TRIGGER}:
        await conn.executemany(_INSERT_JOBS, rows)
        return
    for name in triggers:
        await conn.execute(f"DROP TRIGGER {name}")
    await conn.executemany(_INSERT_JOBS, rows)
    await conn.execute(_ADD_COUNTS, (batch_id,))
    for sql in triggers.values():
        await conn.execute(sql)


PG_ROWS_PER_STATEMENT = 1_000
"""15 parameters a job: well under PostgreSQL's 65,535 a statement."""


async def _insert_rows_at_once(conn: SqlConnection, rows: Sequence[tuple[Any, ...]]) -> None:
    one = "(" + ",".join("?" * len(JOB_COLUMNS.split(","))) + ")"
    for start in range(0, len(rows), PG_ROWS_PER_STATEMENT):
        chunk = rows[start : start + PG_ROWS_PER_STATEMENT]
        values = ",".join([one] * len(chunk))
        await conn.execute(
            f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES {values}", [v for row in chunk for v in row]
        )


async def _insert_triggers(conn: SqlConnection) -> dict[str, str]:
    """Name → CREATE statement of every trigger that fires on an INSERT into `jobs`."""
    async with conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'jobs'"
    ) as cursor:
        rows = await cursor.fetchall()
    # Only the event part of the CREATE statement counts (the body may well say INSERT).
    return {str(name): str(sql) for name, sql in rows if _ON_INSERT.search(_BODY.split(str(sql), 1)[0])}
