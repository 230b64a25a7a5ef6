"""What the SQLite store answers about jobs and their attempts (the reads of `store.jobs`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wfbatch.core.states import IN_FLIGHT_STATES, Execution, JobState, ReviewStatus, state_list
from wfbatch.store.db import SqliteAggregate
from wfbatch.store.rows import AttemptRow, BatchRow, JobRow
from wfbatch.store.sql import within


class SqliteJobReads(SqliteAggregate):
    """The queries of `JobsApi` on SQLite (`SqliteJobs` adds the writes)."""

    async def get_job(self, job_id: int) -> JobRow | None:
        row = await self.fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return JobRow.from_sql(row) if row else None

    async def jobs_for_batch(self, batch_id: str) -> list[JobRow]:
        rows = await self.fetchall("SELECT * FROM jobs WHERE batch_id = ? ORDER BY idx", (batch_id,))
        return [JobRow.from_sql(r) for r in rows]

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
        now: float | None = None,
    ) -> list[JobRow]:
        """Queued jobs of a provider in unpaused batches, highest priority first, then oldest.
        Given `now`, only of batches whose `not_before` has come.
        `exclude_batch_ids` (batches held by their budget) holds back only jobs that would start a
        new execution: one whose execution exists (or may) spends nothing new and is never held.
        `batch_mode` = (wanted, the section's mode), for a provider with a batch API: only the jobs
        that go through it (True) or only the others (False); a job's own `mode` wins."""
        scope, scope_params = within("j.batch_id", batch_ids)
        scope += " AND j.remote_batch IS NULL"
        mode_params: list[Any] = []
        if batch_mode is not None:
            wanted, section_mode = batch_mode
            scope += (
                " AND CASE WHEN COALESCE(json_extract(j.spec, '$.mode'), ?) = 'batch' THEN 1 ELSE 0 END"
                f" = {int(wanted)}"
            )
            mode_params = [section_mode]
        scope_params = [*scope_params, *mode_params]
        excluded_params: list[Any] = []
        if exclude_batch_ids:
            marks = ",".join("?" * len(exclude_batch_ids))
            scope += f" AND NOT (j.execution = 'none' AND j.batch_id IN ({marks}))"
            excluded_params = list(exclude_batch_ids)
        params: list[Any] = [provider, *scope_params, *excluded_params]
        if now is not None:
            scope += " AND (b.not_before IS NULL OR b.not_before <= ?)"
            params.append(now)
        params.append(limit)
        rows = await self.fetchall(
            "SELECT j.* FROM jobs j JOIN batches b ON b.id = j.batch_id"
            f" WHERE j.state = '{JobState.QUEUED.value}' AND j.provider = ? AND b.paused = 0{scope}"
            " ORDER BY j.priority DESC, j.id LIMIT ?",
            params,
        )
        return [JobRow.from_sql(r) for r in rows]

    async def ready_batches(
        self, provider: str, now: float, batch_ids: Sequence[str] | None = None
    ) -> list[BatchRow]:
        # From the kept counts: one row per batch and provider, never a walk over queued jobs.
        scope, params = within("b.id", batch_ids)
        rows = await self.fetchall(
            "SELECT b.* FROM batches b JOIN job_counts c ON c.batch_id = b.id"
            f" WHERE c.provider = ? AND c.state = '{JobState.QUEUED.value}' AND c.n > 0 AND b.paused = 0"
            f" AND (b.not_before IS NULL OR b.not_before <= ?){scope} ORDER BY b.created_at, b.id",
            [provider, now, *params],
        )
        return [BatchRow.from_sql(r) for r in rows]

    async def queued_providers(self, batch_ids: Sequence[str] | None = None) -> set[str]:
        scope, params = within("batch_id", batch_ids)
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

    async def next_retry_at(self, batch_ids: Sequence[str] | None = None) -> float | None:
        scope, params = within("batch_id", batch_ids)
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
    async def recently_changed_batches(self, since: float) -> dict[str, float]:
        """Batches with jobs changed since `since`, and when their latest change was. A full scan
        (no index on `updated_at`: every transition would pay for it), read aside (store/aside.py)
        so it does not hold the shared connection for a second at a million jobs."""
        sql = "SELECT batch_id, MAX(updated_at) AS t FROM jobs WHERE updated_at >= ? GROUP BY batch_id"
        [rows] = await self._read_aside([(sql, (since,))])
        return {r["batch_id"]: float(r["t"]) for r in rows}

    async def attempts_for(self, job_id: int) -> list[AttemptRow]:
        rows = await self.fetchall("SELECT * FROM attempts WHERE job_id = ? ORDER BY id", (job_id,))
        return [AttemptRow.from_sql(r) for r in rows]

    async def starts_since(self, provider: str, since: float, accounts: Sequence[str] | None = None) -> int:
        """Execution starts the provider accepted since `since` (for the daily cap after a restart);
        `accounts`: only those of these accounts (a quota pool's)."""
        query = (
            "SELECT COUNT(*) AS n FROM attempts a JOIN jobs j ON j.id = a.job_id"
            " WHERE j.provider = ? AND a.kind = 'start' AND a.outcome = 'accepted' AND a.at >= ?"
        )
        args: list[Any] = [provider, since]
        if accounts is not None:
            query += f" AND j.account IN ({', '.join('?' for _ in accounts)})"
            args += list(accounts)
        row = await self.fetchone(query, tuple(args))
        return int(row["n"]) if row else 0
