"""Jobs in the SQLite store: every state change, each conditional on the states the transition
table (core/states.py) allows it from, and the outcome of a run written in one transaction."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from wfbatch.core.states import (
    UNFINISHED_STATES,
    WORKING_STATES,
    Execution,
    JobState,
    check_transition,
    execution_after,
    sources_of,
    state_list,
)
from wfbatch.store.database import SqlConnection, for_update
from wfbatch.store.deliveries import queue_notice, want_object
from wfbatch.store.fleet import JOB_FENCE
from wfbatch.store.job_reads import SqliteJobReads
from wfbatch.store.ledger import write_release_and_charge
from wfbatch.store.rows import CLEARED_ERROR, ERROR_COLUMNS, OutcomeRecord
from wfbatch.store.sql import sql_value

# Columns a caller may set through `transition`/`update_job`; anything else is a programming error.
_UPDATABLE = frozenset(
    {
        "attempts",
        "account",
        "generation",
        "next_attempt_at",
        "remote_id",
        "handle",
        "result",
        "file",
        "cache_hit",
        "credits",
        *ERROR_COLUMNS,
        "started_at",
        "finished_at",
        "review",
        "spec",
        "prompt",
        "cache_key",
        "execution",
        "possible_duplicate_charge",
        "remote_batch",
        "owner",
        "owner_epoch",
    }
)



_CLEAR_ERROR = ", ".join(f"{column} = NULL" for column in CLEARED_ERROR)
_RETRYABLE_BY_HAND = state_list(sources_of(JobState.QUEUED, (JobState.FAILED, JobState.CANCELED)))


class SqliteJobs(SqliteJobReads):
    """The jobs aggregate: `SqliteJobReads`' queries, and the writes."""

    _owner: str | None = None

    def fence(self, owner: str | None) -> None:
        """From now on the engine's writes about a job (`transition`, `update_job`,
        `record_outcome`) need it to be `owner`'s under its current lease epoch (None: no fence,
        the one daemon of a SQLite HOME). A daemon whose account was taken over writes nothing more."""
        self._owner = owner

    def _fence(self) -> tuple[str, list[Any]]:
        if self._owner is None:
            return "", []
        return JOB_FENCE, [self._owner, self._owner]

    async def promote_due_retries(self, now: float) -> int:
        sources = state_list(sources_of(JobState.QUEUED, (JobState.RETRYING,)))
        return await self._write(
            f"UPDATE jobs SET state = '{JobState.QUEUED.value}', updated_at = ?"
            f" WHERE state IN ({sources}) AND next_attempt_at <= ?",
            (now, now),
        )

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
        """Set columns of the job whatever its state; its state itself moves only by `transition`
        (or `record_outcome`), from the states the table allows."""
        if "state" in fields:
            raise ValueError("a job's state moves by transition, never by update_job")
        return await self._update(job_id, None, fields)

    async def _update(self, job_id: int, sources: list[JobState] | None, fields: dict[str, Any]) -> bool:
        async with self._db.writer() as conn:
            return await self._set(conn, job_id, sources, fields, time.time())

    async def record_outcome(self, job_id: int, record: OutcomeRecord) -> bool:
        """Write one outcome in ONE transaction (see `OutcomeRecord`); True if the job moved to
        `record.target` (False: it was moved elsewhere first, e.g. canceled; the attempt, the facts
        and what is known of the execution are written all the same)."""
        now = time.time()
        fence, fence_params = self._fence()
        async with self.transaction() as conn:
            async with conn.execute(
                "SELECT batch_id, provider, reserved, execution, remote_id, result FROM jobs WHERE id = ?"
                + fence
                + for_update(self._db),
                (job_id, *fence_params),
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

    async def _set(
        self,
        conn: SqlConnection,
        job_id: int,
        sources: Sequence[JobState] | None,
        fields: dict[str, Any],
        now: float,
    ) -> bool:
        """Inside a transaction: the conditional (or unconditional) update `_update` does."""
        unknown = set(fields) - _UPDATABLE - {"state"}
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        values = {k: sql_value(v) for k, v in fields.items()}
        values["updated_at"] = now
        params: list[Any] = [*values.values(), job_id]
        where = "id = ?"
        if sources is not None:
            where += f" AND state IN ({','.join('?' * len(sources))})"
            params.extend(s.value for s in sources)
        fence, fence_params = self._fence()
        where += fence
        params.extend(fence_params)
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
                    " generation = generation + CASE WHEN execution = 'ended' THEN 1 ELSE 0 END,"
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

    async def touch_job(self, job_id: int) -> None:
        await self._write("UPDATE jobs SET updated_at = ? WHERE id = ?", (time.time(), job_id))

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
