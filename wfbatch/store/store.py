"""The async SQLite store.

One connection in autocommit mode; every multi-statement write runs inside `BEGIN IMMEDIATE` under
one asyncio lock, so concurrent coroutines never interleave their transactions. WAL with
`synchronous=NORMAL`: a killed process loses nothing that was committed (only a power cut can drop
the last transactions, never corrupt the file).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import aiosqlite

from wfbatch.core.bulk_gc import collector_paused
from wfbatch.core.states import (
    IN_FLIGHT_STATES,
    UNFINISHED_STATES,
    WORKING_STATES,
    ErrorClass,
    Execution,
    JobState,
    ReviewStatus,
    check_transition,
    empty_counts,
    execution_after,
    sources_of,
    state_list,
)
from wfbatch.store.aside import read_aside
from wfbatch.store.bulk import insert_new_batch_jobs
from wfbatch.store.deliveries import Deliveries, queue_notice, want_object
from wfbatch.store.ledger import write_release_and_charge
from wfbatch.store.rows import AttemptRow, BatchRow, JobRow, NewJob, OutcomeRecord, spec_to_json
from wfbatch.store.schema import MIGRATIONS, SCHEMA_VERSION

# Columns a caller may set through `transition`/`update_job`; anything else is a programming error.
_UPDATABLE = frozenset(
    {
        "attempts",
        "generation",
        "next_attempt_at",
        "remote_id",
        "handle",
        "result",
        "file",
        "cache_hit",
        "credits",
        "error_class",
        "error_status",
        "error_message",
        "error_request_id",
        "started_at",
        "finished_at",
        "review",
        "spec",
        "prompt",
        "cache_key",
        "execution",
        "possible_duplicate_charge",
        "remote_batch",
    }
)


log = logging.getLogger("wfbatch.store")


class Reuse(Enum):
    """Which earlier batch of the same content identity `insert_batch` returns instead of inserting."""

    NEVER = "never"
    """Always a new batch (duplicates wanted)."""
    UNFINISHED = "unfinished"
    """An unfinished one, resumed (`wfbatch run` of the same file again)."""
    ANY = "any"
    """Any: the content was accepted before, nothing is enqueued (the inbox, `submit`)."""


@dataclass(frozen=True)
class CounterCheck:
    """What `Store.check_counters` found: the counter tables that disagreed and were rebuilt."""

    rebuilt: tuple[str, ...]


async def _open_reader(path: Path) -> aiosqlite.Connection:
    reader = await aiosqlite.connect(path, isolation_level=None)
    try:
        reader.row_factory = aiosqlite.Row
        await reader.execute("PRAGMA query_only=ON")
        await reader.execute("PRAGMA busy_timeout=10000")
    except BaseException:
        await reader.close()
        raise
    return reader


class SchemaTooNew(RuntimeError):
    """The database was written by a newer wfbatch than this one."""


class Store:
    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        # Reads go to a connection of their own: on the writer's they would see whatever transaction
        # another coroutine has half done (a budget check once counted a release without its charge).
        # In WAL mode the reader sees only committed states and never waits for the writer.
        self._reader = conn  # until `open` has migrated the schema
        self.path = path
        self._write_lock = asyncio.Lock()
        self.deliveries = Deliveries(self)

    @classmethod
    async def open(cls, path: Path) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("PRAGMA busy_timeout=10000")
        store = cls(conn, path)
        try:
            await store._migrate()
            store._reader = await _open_reader(path)
        except BaseException:
            await conn.close()
            raise
        return store

    async def close(self) -> None:
        if self._reader is not self._conn:
            await self._reader.close()
        await self._conn.close()

    async def _migrate(self) -> None:
        async with self._conn.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"{self.path} has schema version {version}; this wfbatch knows up to {SCHEMA_VERSION}. "
                "Upgrade wfbatch."
            )
        for target in range(version, SCHEMA_VERSION):
            async with self.transaction():
                for statement in _split_sql(MIGRATIONS[target]):
                    await self._conn.execute(statement)
                await self._conn.execute(f"PRAGMA user_version={target + 1}")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                # SQLite has already rolled back after some errors (SQLITE_FULL among them): a second
                # ROLLBACK would fail and hide the error that matters.
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        """The rows of one read, as last committed (never another coroutine's open transaction).
        Inside a transaction, read on its own connection instead, to see its own writes."""
        # Executed and read in ONE call on the connection's thread: one statement, one snapshot.
        return list(await self._reader.execute_fetchall(sql, params))

    async def _read_aside(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        """Long reads on a connection of their own (`aside`); when one cannot be opened (out of file
        descriptors: a flood of API connections at start), on the shared reader instead — slower
        for every answer meanwhile, but a daemon that stops for want of a descriptor is worse."""
        try:
            return await read_aside(self.path, queries)
        except sqlite3.OperationalError as error:
            log.warning("reading aside failed (%s); reading on the shared reader", error)
            return [await self.fetchall(sql, params) for sql, params in queries]

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Row | None:
        """The first row (for queries that return one: aggregates, lookups by key, LIMIT 1)."""
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One autocommitted statement; returns the number of rows changed."""
        async with self._write_lock, self._conn.execute(sql, params) as cursor:
            return cursor.rowcount

    # -- batches ------------------------------------------------------------------------------

    async def insert_batch(
        self, batch: BatchRow, jobs: Sequence[NewJob], *, reuse: Reuse = Reuse.NEVER
    ) -> BatchRow | None:
        """The batch and all its jobs in ONE transaction: a file is enqueued whole or not at all.

        `batch.content_hash` is the content's identity. The look-up of an earlier batch of the same
        identity (as `reuse` allows) and the insert are one transaction: of two identical submits
        at once, one inserts and the other gets the first's batch back. The first batch of an
        identity is its canonical one, backed by a UNIQUE index. Returns the batch found instead of
        inserting, or None when `batch` was inserted."""
        now = time.time()
        tags_json: dict[tuple[str, ...], str] = {}  # most jobs of a file share their tags
        queued = JobState.QUEUED.value  # an enum's .value is a descriptor call: once, not per job
        with collector_paused():  # a tuple per job, all kept: see core.bulk_gc
            rows = [
                (
                    job.uid,
                    batch.id,
                    job.idx,
                    job.line,
                    job.user_id,
                    job.spec.provider,
                    job.spec_json if job.spec_json is not None else spec_to_json(job.spec),
                    job.spec.prompt,
                    _json_list(job.tags, tags_json),
                    job.cache_key,
                    job.priority,
                    queued,
                    spec_to_json(job.final_spec) if job.final_spec is not None else None,
                    now,
                    now,
                )
                for job in jobs
            ]
        async with self.transaction() as conn:
            existing = await self._reusable_batch(conn, batch.content_hash, reuse)
            if existing is not None:
                return existing
            async with conn.execute(
                "SELECT 1 FROM batches WHERE content_hash = ? AND canonical = 1", (batch.content_hash,)
            ) as cursor:
                canonical = await cursor.fetchone() is None
            await conn.execute(
                "INSERT INTO batches (id, name, source_name, content_hash, provider, cache_enabled, budget,"
                " output_dir, paused, created_at, canonical, auto_approve, delivery, notify)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    batch.id,
                    batch.name,
                    batch.source_name,
                    batch.content_hash,
                    batch.provider,
                    int(batch.cache_enabled),
                    batch.budget,
                    batch.output_dir,
                    int(batch.paused),
                    batch.created_at,
                    int(canonical),
                    batch.auto_approve.value,
                    _json_or_null(batch.delivery),
                    _json_or_null(batch.notify),
                ),
            )
            await insert_new_batch_jobs(conn, batch.id, rows)
        return None

    @staticmethod
    async def _reusable_batch(conn: aiosqlite.Connection, identity: str, reuse: Reuse) -> BatchRow | None:
        if reuse is Reuse.NEVER:
            return None
        if reuse is Reuse.ANY:
            sql = "SELECT * FROM batches WHERE content_hash = ? ORDER BY canonical DESC, created_at LIMIT 1"
        else:
            sql = (
                "SELECT b.* FROM batches b WHERE b.content_hash = ? AND EXISTS ("
                f" SELECT 1 FROM jobs j WHERE j.batch_id = b.id AND j.state <> '{JobState.DONE.value}')"
                " ORDER BY b.created_at DESC LIMIT 1"
            )
        async with conn.execute(sql, (identity,)) as cursor:
            row = await cursor.fetchone()
        return BatchRow.from_sql(row) if row else None

    async def get_batch(self, batch_id: str) -> BatchRow | None:
        row = await self.fetchone("SELECT * FROM batches WHERE id = ?", (batch_id,))
        return BatchRow.from_sql(row) if row else None

    async def batches_named(self, ref: str, limit: int = 10) -> list[BatchRow]:
        """Batches whose id is `ref` or starts with it, or whose name is `ref`, newest first: what
        a person may type for a batch (git-style prefixes). LIKE's wildcards in `ref` are escaped."""
        pattern = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = await self.fetchall(
            "SELECT * FROM batches WHERE id LIKE ? ESCAPE '\\' OR name = ?"
            " ORDER BY created_at DESC, id DESC LIMIT ?",
            (pattern, ref, limit),
        )
        return [BatchRow.from_sql(r) for r in rows]

    async def list_batches(self, limit: int = 100) -> list[BatchRow]:
        rows = await self.fetchall("SELECT * FROM batches ORDER BY created_at DESC LIMIT ?", (limit,))
        return [BatchRow.from_sql(r) for r in rows]

    async def list_batches_page(self, limit: int, before_id: str | None = None) -> list[BatchRow]:
        """Newest first; `before_id` is the last batch of the previous page (a cursor)."""
        if before_id is None:
            rows = await self.fetchall(
                "SELECT * FROM batches ORDER BY created_at DESC, id DESC LIMIT ?", (limit,)
            )
        else:
            rows = await self.fetchall(
                "SELECT b.* FROM batches b, batches c WHERE c.id = ?"
                " AND (b.created_at < c.created_at OR (b.created_at = c.created_at AND b.id < c.id))"
                " ORDER BY b.created_at DESC, b.id DESC LIMIT ?",
                (before_id, limit),
            )
        return [BatchRow.from_sql(r) for r in rows]

    async def batch_with_content_exists(self, content_hash: str) -> BatchRow | None:
        row = await self.fetchone(
            "SELECT * FROM batches WHERE content_hash = ? ORDER BY created_at DESC LIMIT 1", (content_hash,)
        )
        return BatchRow.from_sql(row) if row else None

    async def batch_ids_with_content(self, content_hash: str, source_name: str) -> set[str]:
        """Every batch made from this exact content under this file name (the inbox's crash
        recovery compares the set before and after an acceptance)."""
        rows = await self.fetchall(
            "SELECT id FROM batches WHERE content_hash = ? AND source_name = ?", (content_hash, source_name)
        )
        return {row["id"] for row in rows}

    async def output_dir_taken(self, output_dir: str) -> bool:
        return await self.fetchone("SELECT 1 FROM batches WHERE output_dir = ?", (output_dir,)) is not None

    async def set_batch_budget(self, batch_id: str, budget: float | None) -> bool:
        return await self._write("UPDATE batches SET budget = ? WHERE id = ?", (budget, batch_id)) > 0

    async def set_batch_paused(self, batch_id: str, paused: bool) -> bool:
        return await self._write("UPDATE batches SET paused = ? WHERE id = ?", (int(paused), batch_id)) > 0

    async def paused_batch_ids(self) -> set[str]:
        rows = await self.fetchall("SELECT id FROM batches WHERE paused = 1")
        return {r["id"] for r in rows}

    # -- counts -------------------------------------------------------------------------------

    async def counts(self, batch_ids: Iterable[str] | None = None) -> dict[str, int]:
        """Jobs by state, every state present (zero where none). From the counters (schema 7)."""
        counts = empty_counts()
        scope, params = _within("batch_id", list(batch_ids) if batch_ids is not None else None)
        rows = await self.fetchall(
            f"SELECT state, SUM(n) AS n FROM job_counts WHERE 1{scope} GROUP BY state", params
        )
        for row in rows:
            counts[row["state"]] = row["n"]
        return counts

    async def counts_by(self, column: str) -> dict[str, dict[str, int]]:
        """Jobs by state for each batch (`batch_id`) or provider (`provider`) that has any."""
        if column not in {"batch_id", "provider"}:
            raise ValueError(column)
        rows = await self.fetchall(
            f"SELECT {column} AS k, state, SUM(n) AS n FROM job_counts GROUP BY k, state HAVING SUM(n) > 0"
        )
        result: dict[str, dict[str, int]] = {}
        for row in rows:
            result.setdefault(row["k"], empty_counts())[row["state"]] = row["n"]
        return result

    async def credits_used_by(self, column: str, keys: Sequence[str] | None = None) -> dict[str, float]:
        """Credits charged so far, summed by `batch_id` or `provider` (optionally only `keys`), from
        the charge totals the ledger's trigger keeps (schema 7): one row per batch and provider."""
        if column not in {"batch_id", "provider"}:
            raise ValueError(column)
        if keys is not None and not keys:
            return {}
        scope, params = _within(column, keys)
        rows = await self.fetchall(
            f"SELECT {column} AS k, SUM(credits) AS c FROM charge_totals WHERE 1{scope} GROUP BY k", params
        )
        return {r["k"]: float(r["c"] or 0.0) for r in rows}

    async def counts_for_batches(self, batch_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Jobs by state for just these batches."""
        result = {batch_id: empty_counts() for batch_id in batch_ids}
        if not batch_ids:
            return result
        scope, params = _within("batch_id", batch_ids)
        rows = await self.fetchall(
            f"SELECT batch_id, state, SUM(n) AS n FROM job_counts WHERE 1{scope} GROUP BY batch_id, state",
            params,
        )
        for row in rows:
            result[row["batch_id"]][row["state"]] = row["n"]
        return result

    async def check_counters(self) -> CounterCheck:
        """Compare the counters with what they count (COUNT(*) and SUM over the tables) and rebuild
        the ones that disagree, in one write transaction so no change slips between the two reads.
        The triggers make a disagreement impossible short of a damaged file or a hand edit with the
        triggers dropped; this is the check that says so. A full scan: call it once, on start.

        The comparison reads one snapshot on a connection of its own (store/aside.py), so the API
        and the engine go on meanwhile (3 s at a million jobs); only counters found stale are
        compared again and rebuilt under the write lock."""
        queries = [
            (sql, ()) for kept_sql, counted_sql, _ in _COUNTERS.values() for sql in (kept_sql, counted_sql)
        ]
        read = await self._read_aside(queries)
        pairs = zip(read[::2], read[1::2], strict=True)
        if all(_same_totals(_keyed(kept), _keyed(counted)) for kept, counted in pairs):
            return CounterCheck(rebuilt=())
        async with self.transaction() as conn:
            stale: list[str] = []
            for name, (kept_sql, counted_sql, rebuild) in _COUNTERS.items():
                kept = _keyed(await conn.execute_fetchall(kept_sql))
                counted = _keyed(await conn.execute_fetchall(counted_sql))
                if not _same_totals(kept, counted):
                    stale.append(name)
                    log.warning("%s: the %s counters disagreed with their tables; rebuilt", self.path, name)
                    for statement in rebuild:
                        await conn.execute(statement)
        return CounterCheck(rebuilt=tuple(stale))

    async def queue_waits(self, recent: int = 1000) -> tuple[int, float, list[float]]:
        """Seconds from enqueue to first start: (count, sum) over every started job, and the
        waits of the `recent` most recently started ones."""
        row = await self.fetchone("SELECT started AS n, seconds AS s FROM wait_totals WHERE id = 1")
        rows = await self.fetchall(
            "SELECT started_at - created_at AS w FROM jobs WHERE started_at IS NOT NULL"
            " ORDER BY started_at DESC LIMIT ?",
            (recent,),
        )
        count = int(row["n"]) if row else 0
        total = float(row["s"] or 0.0) if row else 0.0
        return count, total, [max(0.0, float(r["w"])) for r in rows]

    async def cache_hits(self, batch_ids: Sequence[str]) -> int:
        scope, params = _within("batch_id", batch_ids)
        row = await self.fetchone(f"SELECT COUNT(*) AS n FROM jobs WHERE cache_hit = 1{scope}", params)
        return int(row["n"]) if row else 0

    # -- jobs ---------------------------------------------------------------------------------

    async def get_job(self, job_id: int) -> JobRow | None:
        row = await self.fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return JobRow.from_sql(row) if row else None

    async def jobs_for_batch(self, batch_id: str) -> list[JobRow]:
        rows = await self.fetchall("SELECT * FROM jobs WHERE batch_id = ? ORDER BY idx", (batch_id,))
        return [JobRow.from_sql(r) for r in rows]

    # -- drafts and finals ----------------------------------------------------------------------

    async def queue_final(self, draft_id: int, uid: str, final_cache_key: str) -> int | None:
        """Queue the final of an approved draft: the draft's `final_spec` as a new job of the same
        batch, index, line and priority, already approved, linked by `draft_of`. Returns the new
        job's id, or None when the job is no draft or its final exists already (the UNIQUE index on
        `draft_of` makes that hold even for two approvals at once: only one insert can win)."""
        now = time.time()
        async with self.transaction() as conn, conn.execute(
            "INSERT OR IGNORE INTO jobs (uid, batch_id, idx, line, user_id, provider, spec, prompt,"
            " tags, cache_key, priority, state, review, draft_of, created_at, updated_at)"
            " SELECT ?, batch_id, idx, line, user_id, json_extract(final_spec, '$.provider'),"
            f" final_spec, prompt, tags, ?, priority, '{JobState.QUEUED.value}',"
            f" '{ReviewStatus.APPROVED.value}', id, ?, ?"
            " FROM jobs WHERE id = ? AND final_spec IS NOT NULL",
            (uid, final_cache_key, now, now, draft_id),
        ) as cursor:
            inserted = cursor.rowcount > 0
            final_id = cursor.lastrowid
        return final_id if inserted else None

    async def final_of(self, draft_id: int) -> JobRow | None:
        row = await self.fetchone("SELECT * FROM jobs WHERE draft_of = ?", (draft_id,))
        return JobRow.from_sql(row) if row else None

    async def cancel_unstarted_final(self, draft_id: int) -> int | None:
        """Cancel the final of `draft_id` if it has not started (queued or retrying, and no start
        of it ever sent), checked and done in one conditional update: a final that starts at the
        same moment is left alone. The canceled final's id, or None."""
        now = time.time()
        not_started = state_list(_FINAL_NOT_STARTED)
        async with self.transaction() as conn:
            async with conn.execute(
                f"UPDATE jobs SET state = '{JobState.CANCELED.value}', next_attempt_at = NULL,"
                f" finished_at = ?, updated_at = ? WHERE draft_of = ? AND state IN ({not_started})"
                f" AND execution = '{Execution.NONE.value}'",
                (now, now, draft_id),
            ) as cursor:
                if not cursor.rowcount:
                    return None
            async with conn.execute("SELECT id FROM jobs WHERE draft_of = ?", (draft_id,)) as cursor:
                row = await cursor.fetchone()
        return int(row[0]) if row else None

    async def finals_of(self, draft_ids: Sequence[int]) -> dict[int, JobRow]:
        """Draft id → its final, for the drafts among `draft_ids` that have one."""
        found: dict[int, JobRow] = {}
        for start in range(0, len(draft_ids), 500):
            chunk = list(draft_ids[start : start + 500])
            rows = await self.fetchall(
                f"SELECT * FROM jobs WHERE draft_of IN ({','.join('?' * len(chunk))})", chunk
            )
            for row in rows:
                found[int(row["draft_of"])] = JobRow.from_sql(row)
        return found

    async def draft_reviews(self) -> tuple[int, int]:
        """(approved, reviewed) drafts of every batch so far: this HOME's approval rate."""
        row = await self.fetchone(
            f"SELECT SUM(review = '{ReviewStatus.APPROVED.value}') AS a,"
            f" SUM(review <> '{ReviewStatus.PENDING.value}') AS r"
            " FROM jobs WHERE final_spec IS NOT NULL"
        )
        if row is None:
            return 0, 0
        return int(row["a"] or 0), int(row["r"] or 0)

    async def pipeline_counts(self, batch_ids: Sequence[str] | None = None) -> dict[str, int]:
        """Drafts (all, done, approved, rejected) and finals (all, done) — zero where none."""
        scope, params = _within("batch_id", batch_ids)
        done = JobState.DONE.value
        row = await self.fetchone(
            "SELECT SUM(final_spec IS NOT NULL) AS drafts,"
            f" SUM(final_spec IS NOT NULL AND state = '{done}') AS drafts_done,"
            f" SUM(final_spec IS NOT NULL AND review = '{ReviewStatus.APPROVED.value}') AS approved,"
            f" SUM(final_spec IS NOT NULL AND review = '{ReviewStatus.REJECTED.value}') AS rejected,"
            " SUM(draft_of IS NOT NULL) AS finals,"
            f" SUM(draft_of IS NOT NULL AND state = '{done}') AS finals_done"
            f" FROM jobs WHERE (final_spec IS NOT NULL OR draft_of IS NOT NULL){scope}",
            params,
        )
        names = ("drafts", "drafts_done", "approved", "rejected", "finals", "finals_done")
        return {name: int(row[name] or 0) if row else 0 for name in names}

    async def list_jobs(
        self,
        *,
        states: Sequence[JobState] = (),
        batch_id: str | None = None,
        text: str | None = None,
        review: ReviewStatus | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[JobRow]:
        """One page of jobs ordered by id; the caller passes the last id it saw as `after_id`."""
        where = ["id > ?"]
        params: list[Any] = [after_id]
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            params.extend(s.value for s in states)
        if batch_id:
            where.append("batch_id = ?")
            params.append(batch_id)
        if text:
            where.append("prompt LIKE ? ESCAPE '\\'")
            params.append("%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        if review:
            where.append("review = ?")
            params.append(review.value)
        params.append(limit)
        rows = await self.fetchall(
            f"SELECT * FROM jobs WHERE {' AND '.join(where)} ORDER BY id LIMIT ?", params
        )
        return [JobRow.from_sql(r) for r in rows]

    async def ready_jobs(
        self,
        provider: str,
        limit: int,
        batch_ids: Sequence[str] | None = None,
        *,
        exclude_batch_ids: Sequence[str] = (),
        batch_mode: tuple[bool, str] | None = None,
    ) -> list[JobRow]:
        """Queued jobs of a provider in unpaused batches, highest priority first, then oldest.
        `exclude_batch_ids` (batches held by their budget) holds back only jobs that would start a
        new execution: one whose execution exists (or may) spends nothing new and is never held.
        `batch_mode` = (wanted, the section's mode), for a provider with a batch API: only the jobs
        that go through it (True) or only the others (False); a job's own `mode` wins."""
        scope, scope_params = _within("j.batch_id", batch_ids)
        scope += " AND j.remote_batch IS NULL"
        mode_params: list[Any] = []
        if batch_mode is not None:
            wanted, section_mode = batch_mode
            scope += f" AND (COALESCE(json_extract(j.spec, '$.mode'), ?) = 'batch') = {int(wanted)}"
            mode_params = [section_mode]
        scope_params = [*scope_params, *mode_params]
        excluded_params: list[Any] = []
        if exclude_batch_ids:
            marks = ",".join("?" * len(exclude_batch_ids))
            scope += f" AND NOT (j.execution = 'none' AND j.batch_id IN ({marks}))"
            excluded_params = list(exclude_batch_ids)
        params: list[Any] = [provider, *scope_params, *excluded_params]
        params.append(limit)
        rows = await self.fetchall(
            "SELECT j.* FROM jobs j JOIN batches b ON b.id = j.batch_id"
            f" WHERE j.state = '{JobState.QUEUED.value}' AND j.provider = ? AND b.paused = 0{scope}"
            " ORDER BY j.priority DESC, j.id LIMIT ?",
            params,
        )
        return [JobRow.from_sql(r) for r in rows]

    async def queued_providers(self, batch_ids: Sequence[str] | None = None) -> set[str]:
        scope, params = _within("batch_id", batch_ids)
        rows = await self.fetchall(
            f"SELECT DISTINCT provider FROM jobs WHERE state = '{JobState.QUEUED.value}'{scope}", params
        )
        return {r["provider"] for r in rows}

    async def queued_batch_providers(self) -> dict[str, set[str]]:
        """Batches with queued jobs → the providers of those jobs (for telling of holds)."""
        rows = await self.fetchall(
            f"SELECT DISTINCT batch_id, provider FROM jobs WHERE state = '{JobState.QUEUED.value}'"
        )
        found: dict[str, set[str]] = {}
        for row in rows:
            found.setdefault(row["batch_id"], set()).add(row["provider"])
        return found

    async def promote_due_retries(self, now: float) -> int:
        sources = state_list(sources_of(JobState.QUEUED, (JobState.RETRYING,)))
        return await self._write(
            f"UPDATE jobs SET state = '{JobState.QUEUED.value}', updated_at = ?"
            f" WHERE state IN ({sources}) AND next_attempt_at <= ?",
            (now, now),
        )

    async def next_retry_at(self, batch_ids: Sequence[str] | None = None) -> float | None:
        scope, params = _within("batch_id", batch_ids)
        row = await self.fetchone(
            f"SELECT MIN(next_attempt_at) AS t FROM jobs WHERE state = '{JobState.RETRYING.value}'{scope}",
            params,
        )
        return row["t"] if row and row["t"] is not None else None

    async def in_flight_jobs(self) -> list[JobRow]:
        in_flight = state_list(IN_FLIGHT_STATES)
        # A job of a remote batch is driven by its batch (engine.remote_batches), not one by one.
        rows = await self.fetchall(
            f"SELECT * FROM jobs WHERE state IN ({in_flight}) AND remote_batch IS NULL ORDER BY id"
        )
        return [JobRow.from_sql(r) for r in rows]

    async def transition(
        self, job_id: int, from_states: Iterable[JobState], to_state: JobState, **fields: Any
    ) -> bool:
        """Move a job to `to_state` if it is still in one of `from_states`; False if it was not
        (someone else — a cancel, a retry — moved it first)."""
        sources = list(from_states)
        for source in sources:
            check_transition(source, to_state)
        return await self._update(job_id, sources, {"state": to_state.value, **fields})

    async def update_job(self, job_id: int, **fields: Any) -> bool:
        return await self._update(job_id, None, fields)

    async def _update(self, job_id: int, sources: list[JobState] | None, fields: dict[str, Any]) -> bool:
        async with self._write_lock:
            return await self._set(self._conn, job_id, sources, fields, time.time())

    async def record_outcome(self, job_id: int, record: OutcomeRecord) -> bool:
        """Write one outcome in ONE transaction (see `OutcomeRecord`); True if the job moved to
        `record.target` (False: it was moved elsewhere first, e.g. canceled; the attempt, the facts
        and what is known of the execution are written all the same)."""
        now = time.time()
        async with self.transaction() as conn:
            async with conn.execute(
                "SELECT batch_id, provider, reserved, execution, remote_id, result FROM jobs WHERE id = ?",
                (job_id,),
            ) as cursor:
                row = await cursor.fetchone()
            if row is None:
                return False
            if record.attempt is not None:
                a = record.attempt
                await conn.execute(
                    "INSERT INTO attempts (job_id, at, kind, outcome, http_status, message, request_id,"
                    " remote_id) VALUES (?,?,?,?,?,?,?,?)",
                    (job_id, now, a.kind, a.outcome, a.http_status, a.message, a.request_id, a.remote_id),
                )
            execution = Execution(
                record.facts.get("execution")
                or execution_after(
                    Execution(row["execution"]),
                    start_refused=record.start_refused,
                    ended=record.ended,
                    has_remote=row["remote_id"] is not None or record.facts.get("remote_id") is not None,
                    has_result=row["result"] is not None,
                )
            )
            facts = {**record.facts, "execution": execution}
            await self._set(conn, job_id, None, facts, now)
            moved = True
            if record.target is not None:
                sources = sources_of(record.target, WORKING_STATES)
                moved = await self._set(conn, job_id, sources, {"state": record.target, **record.fields}, now)
                if moved and record.deliver and record.fields.get("file"):
                    await want_object(conn, row["batch_id"], job_id, record.fields["file"], now)
                if moved and record.notice is not None:
                    await queue_notice(conn, row["batch_id"], record.notice, now)
            elif record.fields:
                await self._set(conn, job_id, None, record.fields, now)
            if row["reserved"] is not None and execution in (Execution.NONE, Execution.ENDED):
                await write_release_and_charge(conn, job_id, row, 0.0, now)
                await conn.execute("UPDATE jobs SET reserved = NULL WHERE id = ?", (job_id,))
        return moved

    @staticmethod
    async def _set(
        conn: aiosqlite.Connection,
        job_id: int,
        sources: Sequence[JobState] | None,
        fields: dict[str, Any],
        now: float,
    ) -> bool:
        """Inside a transaction: the conditional (or unconditional) update `_update` does."""
        unknown = set(fields) - _UPDATABLE - {"state"}
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        values = {k: _sql_value(v) for k, v in fields.items()}
        values["updated_at"] = now
        params: list[Any] = [*values.values(), job_id]
        where = "id = ?"
        if sources is not None:
            where += f" AND state IN ({','.join('?' * len(sources))})"
            params.extend(s.value for s in sources)
        async with conn.execute(
            f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in values)} WHERE {where}", params
        ) as cursor:
            return cursor.rowcount > 0

    async def requeue_for_retry(self, job_ids: Sequence[int]) -> list[int]:
        """Failed or canceled jobs back to queued by hand, attempts reset. An execution that exists
        or may (a lost answer to the start, one that outlived max_run_seconds, one canceled while
        running, one finished but not downloaded) is resumed: same key, same remote id, polled or
        downloaded first, never paid again. Only an execution known to have ended without an image
        moves the generation on, so the provider sees a new idempotency key."""
        retried: list[int] = []
        async with self.transaction() as conn:
            for job_id in job_ids:
                async with conn.execute(
                    f"UPDATE jobs SET state = '{JobState.QUEUED.value}', attempts = 0,"
                    " generation = generation + (execution = 'ended'),"
                    " remote_id = CASE WHEN execution IN ('maybe', 'finished') THEN remote_id END,"
                    " handle = CASE WHEN execution IN ('maybe', 'finished') THEN handle END,"
                    " result = CASE WHEN execution IN ('maybe', 'finished') THEN result END,"
                    " execution = CASE WHEN execution = 'ended' THEN 'none' ELSE execution END,"
                    f" next_attempt_at = NULL, {_CLEAR_ERROR}, finished_at = NULL,"
                    f" updated_at = ? WHERE id = ? AND state IN ({_RETRYABLE_BY_HAND})",
                    (time.time(), job_id),
                ) as cursor:
                    if cursor.rowcount:
                        retried.append(job_id)
        return retried

    async def cancel_jobs(self, job_ids: Sequence[int]) -> list[int]:
        """Jobs not yet finished → canceled, in one transaction; returns the ids that moved."""
        canceled: list[int] = []
        now = time.time()
        sources = state_list(sources_of(JobState.CANCELED, UNFINISHED_STATES))
        async with self.transaction() as conn:
            for job_id in job_ids:
                async with conn.execute(
                    f"UPDATE jobs SET state = '{JobState.CANCELED.value}', next_attempt_at = NULL,"
                    f" finished_at = ?, updated_at = ? WHERE id = ? AND state IN ({sources})",
                    (now, now, job_id),
                ) as cursor:
                    if cursor.rowcount:
                        canceled.append(job_id)
        return canceled

    async def job_ids(
        self, *, states: Sequence[JobState], batch_id: str | None = None, limit: int = 1_000_000
    ) -> list[int]:
        params: list[Any] = [s.value for s in states]
        scope = ""
        if batch_id:
            scope = " AND batch_id = ?"
            params.append(batch_id)
        params.append(limit)
        rows = await self.fetchall(
            f"SELECT id FROM jobs WHERE state IN ({','.join('?' * len(states))}){scope} ORDER BY id LIMIT ?",
            params,
        )
        return [r["id"] for r in rows]

    async def recent_durations(self, provider: str, limit: int = 200) -> list[float]:
        """Seconds from start to image of the provider's latest generated (not cached) jobs."""
        rows = await self.fetchall(
            "SELECT finished_at - started_at AS d FROM jobs WHERE provider = ?"
            f" AND state = '{JobState.DONE.value}'"
            " AND cache_hit = 0 AND started_at IS NOT NULL AND finished_at IS NOT NULL"
            " ORDER BY finished_at DESC LIMIT ?",
            (provider, limit),
        )
        return [float(r["d"]) for r in rows if r["d"] is not None and r["d"] >= 0]

    async def canceled_live_executions(self, limit: int) -> list[JobRow]:
        """Canceled jobs whose remote execution may still run and charge, least recently looked at first."""
        rows = await self.fetchall(
            f"SELECT * FROM jobs WHERE state = '{JobState.CANCELED.value}'"
            f" AND execution = '{Execution.MAYBE.value}' AND remote_id IS NOT NULL"
            " AND reserved IS NOT NULL"  # money to settle; a free provider's execution is left alone
            " ORDER BY updated_at LIMIT ?",
            (limit,),
        )
        return [JobRow.from_sql(r) for r in rows]

    async def failed_live_executions(self, limit: int) -> list[JobRow]:
        """Failed jobs whose known remote execution may still run and charge (given up on while
        it ran), least recently looked at first."""
        rows = await self.fetchall(
            f"SELECT * FROM jobs WHERE state = '{JobState.FAILED.value}'"
            f" AND execution = '{Execution.MAYBE.value}' AND remote_id IS NOT NULL"
            " AND reserved IS NOT NULL ORDER BY updated_at LIMIT ?",
            (limit,),
        )
        return [JobRow.from_sql(r) for r in rows]

    async def touch_job(self, job_id: int) -> None:
        await self._write("UPDATE jobs SET updated_at = ? WHERE id = ?", (time.time(), job_id))

    async def recently_changed_batches(self, since: float) -> dict[str, float]:
        """Batches with jobs changed since `since`, and when their latest change was. A full scan
        (no index on `updated_at`: every transition would pay for it), read aside (store/aside.py)
        so it does not hold the shared connection for a second at a million jobs."""
        sql = "SELECT batch_id, MAX(updated_at) AS t FROM jobs WHERE updated_at >= ? GROUP BY batch_id"
        [rows] = await self._read_aside([(sql, (since,))])
        return {r["batch_id"]: float(r["t"]) for r in rows}

    async def probe_write(self) -> None:
        """Commit a write that needs fresh pages: raises SQLITE_FULL while the disk is full."""
        async with self.transaction() as conn:
            await conn.execute("INSERT INTO space_probe (data) VALUES (zeroblob(65536))")
            await conn.execute("DELETE FROM space_probe")

    # -- attempts -----------------------------------------------------------------------------

    async def add_attempt(
        self,
        job_id: int,
        *,
        kind: str,
        outcome: str,
        http_status: int | None = None,
        message: str | None = None,
        request_id: str | None = None,
        remote_id: str | None = None,
    ) -> None:
        await self._write(
            "INSERT INTO attempts (job_id, at, kind, outcome, http_status, message, request_id, remote_id)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (job_id, time.time(), kind, outcome, http_status, message, request_id, remote_id),
        )

    async def attempts_for(self, job_id: int) -> list[AttemptRow]:
        rows = await self.fetchall("SELECT * FROM attempts WHERE job_id = ? ORDER BY id", (job_id,))
        return [AttemptRow.from_sql(r) for r in rows]

    async def starts_since(self, provider: str, since: float) -> int:
        """Execution starts the provider accepted since `since` (for the daily cap after a restart)."""
        row = await self.fetchone(
            "SELECT COUNT(*) AS n FROM attempts a JOIN jobs j ON j.id = a.job_id"
            " WHERE j.provider = ? AND a.kind = 'start' AND a.outcome = 'accepted' AND a.at >= ?",
            (provider, since),
        )
        return int(row["n"]) if row else 0

    # -- cache --------------------------------------------------------------------------------

    async def cache_get(self, key: str) -> tuple[str, str] | None:
        row = await self.fetchone("SELECT sha256, media_type FROM cache_entries WHERE key = ?", (key,))
        return (row["sha256"], row["media_type"]) if row else None

    async def cache_put(self, key: str, sha256: str, media_type: str) -> None:
        await self._write(
            "INSERT OR REPLACE INTO cache_entries (key, sha256, media_type, created_at) VALUES (?,?,?,?)",
            (key, sha256, media_type, time.time()),
        )

    async def cached_keys(self, keys: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            rows = await self.fetchall(
                f"SELECT key FROM cache_entries WHERE key IN ({','.join('?' * len(chunk))})", chunk
            )
            found.update(r["key"] for r in rows)
        return found

    # -- pauses -------------------------------------------------------------------------------

    async def pauses(self) -> dict[str, str]:
        rows = await self.fetchall("SELECT scope, reason FROM pauses")
        return {r["scope"]: r["reason"] for r in rows}

    async def set_pause(self, scope: str, reason: str) -> None:
        await self._write(
            "INSERT OR REPLACE INTO pauses (scope, reason, created_at) VALUES (?,?,?)",
            (scope, reason, time.time()),
        )

    async def clear_pause(self, scope: str) -> bool:
        return await self._write("DELETE FROM pauses WHERE scope = ?", (scope,)) > 0


_CLEAR_ERROR = "error_class = NULL, error_status = NULL, error_message = NULL, error_request_id = NULL"
_FINAL_NOT_STARTED = (JobState.QUEUED, JobState.RETRYING)
_RETRYABLE_BY_HAND = state_list(sources_of(JobState.QUEUED, (JobState.FAILED, JobState.CANCELED)))


# Each counter table: (its rows, the same figures counted from the table it counts, its rebuild).
# Every row is (key..., figure); a key absent on one side counts as zero.
_COUNTERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "job_counts": (
        "SELECT batch_id, provider, state, n FROM job_counts",
        "SELECT batch_id, provider, state, COUNT(*) FROM jobs GROUP BY batch_id, provider, state",
        (
            "DELETE FROM job_counts",
            "INSERT INTO job_counts (batch_id, provider, state, n)"
            " SELECT batch_id, provider, state, COUNT(*) FROM jobs GROUP BY batch_id, provider, state",
        ),
    ),
    "charge_totals": (
        "SELECT batch_id, provider, credits FROM charge_totals",
        "SELECT batch_id, provider, SUM(credits) FROM ledger WHERE kind = 'charge'"
        " GROUP BY batch_id, provider",
        (
            "DELETE FROM charge_totals",
            "INSERT INTO charge_totals (batch_id, provider, credits) SELECT batch_id, provider, SUM(credits)"
            " FROM ledger WHERE kind = 'charge' GROUP BY batch_id, provider",
        ),
    ),
    "wait_totals": (
        "SELECT 'started', started FROM wait_totals UNION ALL SELECT 'seconds', seconds FROM wait_totals",
        "SELECT 'started', COUNT(*) FROM jobs WHERE started_at IS NOT NULL UNION ALL"
        " SELECT 'seconds', COALESCE(SUM(started_at - created_at), 0) FROM jobs WHERE started_at IS NOT NULL",
        (
            "INSERT OR REPLACE INTO wait_totals (id, started, seconds) SELECT 1, COUNT(*),"
            " COALESCE(SUM(started_at - created_at), 0) FROM jobs WHERE started_at IS NOT NULL",
        ),
    ),
}


def _keyed(rows: Iterable[Sequence[Any]]) -> dict[tuple[Any, ...], Any]:
    """A counter query's rows as {key columns: the last column}."""
    return {tuple(r[:-1]): r[-1] for r in rows}


def _same_totals(kept: dict[tuple[Any, ...], Any], counted: dict[tuple[Any, ...], Any]) -> bool:
    """Equal figures for every key (absent = 0); sums of floats within a rounding error."""
    for key in kept.keys() | counted.keys():
        a, b = kept.get(key, 0) or 0, counted.get(key, 0) or 0
        if abs(a - b) > 1e-6 * max(1.0, abs(a), abs(b)):
            return False
    return True


def _within(column: str, values: Sequence[str] | None, *, negate: bool = False) -> tuple[str, list[Any]]:
    """` AND column [NOT] IN (?, ...)` and its parameters; nothing when `values` is None."""
    if values is None:
        return "", []
    marks = ",".join("?" * len(values))
    return f" AND {column} {'NOT ' if negate else ''}IN ({marks})", list(values)


def _split_sql(script: str) -> list[str]:
    """The statements of a migration script, one each (a trigger's body holds `;` of its own)."""
    statements: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending.strip())
            pending = ""
    return statements


def _json_or_null(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _json_list(items: list[str], seen: dict[tuple[str, ...], str]) -> str:
    key = tuple(items)
    text = seen.get(key)
    if text is None:
        text = seen[key] = json.dumps(items, ensure_ascii=False)
    return text


def _sql_value(value: Any) -> Any:
    if isinstance(value, JobState | ReviewStatus | ErrorClass):
        return value.value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value
