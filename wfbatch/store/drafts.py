"""Drafts and their finals in the SQLite store: a draft's approval queues its final as a new job."""

from __future__ import annotations

import time
from collections.abc import Sequence

from wfbatch.core.states import Execution, JobState, ReviewStatus, state_list
from wfbatch.store.database import insert_id
from wfbatch.store.db import SqliteAggregate
from wfbatch.store.rows import JobRow
from wfbatch.store.sql import count_if, within


class SqliteDrafts(SqliteAggregate):
    """`DraftsApi` on SQLite: a final is a job row with `draft_of` set."""

    async def queue_final(self, draft_id: int, uid: str, final_cache_key: str) -> int | None:
        """Queue the final of an approved draft: the draft's `final_spec` as a new job of the same
        batch, index, line and priority, already approved, linked by `draft_of`. Returns the new
        job's id, or None when the job is no draft or its final exists already (the UNIQUE index on
        `draft_of` makes that hold even for two approvals at once: only one insert can win)."""
        now = time.time()
        async with self.transaction() as conn:
            return await insert_id(
                conn,
                self._db.dialect,
                "INSERT OR IGNORE INTO jobs (uid, batch_id, idx, line, user_id, provider, spec, prompt,"
                " tags, cache_key, priority, state, review, draft_of, created_at, updated_at)"
                " SELECT ?, batch_id, idx, line, user_id, json_extract(final_spec, '$.provider'),"
                f" final_spec, prompt, tags, ?, priority, '{JobState.QUEUED.value}',"
                f" '{ReviewStatus.APPROVED.value}', id, ?, ?"
                " FROM jobs WHERE id = ? AND final_spec IS NOT NULL",
                (uid, final_cache_key, now, now, draft_id),
            )

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
        approved, reviewed = ReviewStatus.APPROVED.value, ReviewStatus.PENDING.value
        was_approved, was_reviewed = f"review = '{approved}'", f"review <> '{reviewed}'"
        row = await self.fetchone(
            f"SELECT {count_if(was_approved)} AS a, {count_if(was_reviewed)} AS r"
            " FROM jobs WHERE final_spec IS NOT NULL"
        )
        if row is None:
            return 0, 0
        return int(row["a"] or 0), int(row["r"] or 0)

    async def pipeline_counts(self, batch_ids: Sequence[str] | None = None) -> dict[str, int]:
        """Drafts (all, done, approved, rejected) and finals (all, done) — zero where none."""
        scope, params = within("batch_id", batch_ids)
        done = JobState.DONE.value
        approved, rejected = ReviewStatus.APPROVED.value, ReviewStatus.REJECTED.value
        draft, final = "final_spec IS NOT NULL", "draft_of IS NOT NULL"
        counted = {
            "drafts": draft,
            "drafts_done": f"{draft} AND state = '{done}'",
            "approved": f"{draft} AND review = '{approved}'",
            "rejected": f"{draft} AND review = '{rejected}'",
            "finals": final,
            "finals_done": f"{final} AND state = '{done}'",
        }
        columns = ", ".join(f"{count_if(condition)} AS {name}" for name, condition in counted.items())
        row = await self.fetchone(
            f"SELECT {columns}"
            f" FROM jobs WHERE ({draft} OR {final}){scope}",
            params,
        )
        names = ("drafts", "drafts_done", "approved", "rejected", "finals", "finals_done")
        return {name: int(row[name] or 0) if row else 0 for name in names}


_FINAL_NOT_STARTED = (JobState.QUEUED, JobState.RETRYING)
