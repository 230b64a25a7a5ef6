"""Batches in the SQLite store: one accepted prompt file each, inserted with all its jobs at once."""

from __future__ import annotations

import time
from collections.abc import Sequence

from wfbatch.core.bulk_gc import collector_paused
from wfbatch.core.states import JobState
from wfbatch.store.bulk import insert_new_batch_jobs
from wfbatch.store.database import SqlConnection
from wfbatch.store.db import SqliteAggregate
from wfbatch.store.rows import BatchRow, NewJob, Reuse, spec_to_json
from wfbatch.store.sql import json_list, json_or_null


class SqliteBatches(SqliteAggregate):
    """`BatchesApi` on SQLite."""

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
                    json_list(job.tags, tags_json),
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
            # The first batch of a content is its canonical one, and the unique index
            # `batches_identity` lets only one in: when another acceptance of the same content
            # committed first (another daemon on PostgreSQL, whose transactions run side by side),
            # this insert does nothing, and that batch is reused if `reuse` allows.
            if not await self._insert_row(conn, batch, canonical=True):
                existing = await self._reusable_batch(conn, batch.content_hash, reuse)
                if existing is not None:
                    return existing
                await self._insert_row(conn, batch, canonical=False)
            await insert_new_batch_jobs(conn, batch.id, rows, self._db.dialect)
        return None

    @staticmethod
    async def _insert_row(conn: SqlConnection, batch: BatchRow, *, canonical: bool) -> bool:
        """Insert the batch's row; False when it would be a second canonical batch of its content."""
        async with conn.execute(
            "INSERT INTO batches (id, name, source_name, content_hash, provider, cache_enabled, budget,"
            " output_dir, paused, created_at, canonical, auto_approve, delivery, notify)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT (content_hash) WHERE canonical = 1 DO NOTHING",
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
                json_or_null(batch.delivery),
                json_or_null(batch.notify),
            ),
        ) as cursor:
            return cursor.rowcount > 0

    @staticmethod
    async def _reusable_batch(conn: SqlConnection, identity: str, reuse: Reuse) -> BatchRow | None:
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
