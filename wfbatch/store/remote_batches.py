"""Remote batches (a provider's batch API) in the store: the row of each uploaded file and remote
batch, and the jobs that belong to it.

Steps, each committed before the network call that depends on it:
`gathered` (jobs marked submitting with the row, one transaction) → `uploading` (written before
the upload: after a crash the file is looked up by its name, never uploaded twice) → `uploaded`
(file id kept) →
`creating` (written BEFORE the create request: after a crash the remote batch is looked up by its
tag, never created twice) → `started` (remote id kept, jobs running) → `collecting` (the remote
batch ended; its files are read) → `closed`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from wfbatch.core.states import Execution, JobState, sources_of, state_list
from wfbatch.store.database import SqlDatabase, insert_id
from wfbatch.store.rows import JobRow


class Step(StrEnum):
    GATHERED = "gathered"
    UPLOADING = "uploading"
    UPLOADED = "uploaded"
    CREATING = "creating"
    STARTED = "started"
    COLLECTING = "collecting"
    CLOSED = "closed"


LIVE_STEPS = (Step.GATHERED, Step.UPLOADING, Step.UPLOADED, Step.CREATING, Step.STARTED, Step.COLLECTING)
_LIVE = ",".join(f"'{step.value}'" for step in LIVE_STEPS)
# The moves a remote batch makes of its jobs, from the states the transition table allows.
_GATHERABLE = state_list(sources_of(JobState.SUBMITTING, (JobState.QUEUED,)))
_STARTABLE = state_list(sources_of(JobState.RUNNING, (JobState.SUBMITTING,)))


@dataclass(frozen=True)
class RemoteBatchRow:
    id: int
    provider: str
    batch_id: str
    model: str
    tag: str
    step: Step
    lines: int
    file_id: str | None
    remote_id: str | None
    status: str | None
    total: int
    completed: int
    failed: int
    output_file_id: str | None
    error_file_id: str | None
    message: str | None
    cancel_requested: bool
    created_at: float
    polled_at: float | None
    closed_at: float | None

    @classmethod
    def from_sql(cls, row: Any) -> RemoteBatchRow:
        return cls(
            id=row["id"],
            provider=row["provider"],
            batch_id=row["batch_id"],
            model=row["model"],
            tag=row["tag"],
            step=Step(row["step"]),
            lines=row["lines"],
            file_id=row["file_id"],
            remote_id=row["remote_id"],
            status=row["status"],
            total=row["total"],
            completed=row["completed"],
            failed=row["failed"],
            output_file_id=row["output_file_id"],
            error_file_id=row["error_file_id"],
            message=row["message"],
            cancel_requested=bool(row["cancel_requested"]),
            created_at=row["created_at"],
            polled_at=row["polled_at"],
            closed_at=row["closed_at"],
        )

    def to_json(self) -> dict[str, Any]:
        """What `status`, the events and `run --json` show of it."""
        return {
            "id": self.id,
            "provider": self.provider,
            "batch_id": self.batch_id,
            "model": self.model,
            "step": self.step.value,
            "remote_id": self.remote_id,
            "file_id": self.file_id,
            "status": self.status,
            "lines": self.lines,
            "request_counts": {"total": self.total, "completed": self.completed, "failed": self.failed},
            "message": self.message,
        }


_UPDATABLE = frozenset(
    {
        "step",
        "file_id",
        "remote_id",
        "status",
        "total",
        "completed",
        "failed",
        "output_file_id",
        "error_file_id",
        "message",
        "cancel_requested",
        "polled_at",
        "closed_at",
    }
)


class SqliteRemoteBatches:
    """The remote-batch table on the one store (its connection, lock and transactions)."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    async def gather(
        self, provider: str, batch_id: str, model: str, tag: str, job_ids: Sequence[int], now: float
    ) -> tuple[RemoteBatchRow, list[int]] | None:
        """The row and its jobs in ONE transaction: every job still queued (and in no live remote
        batch) becomes `submitting` with an execution that may exist, pointing at the row. Returns
        the row and the ids that joined (None, and no row, when none did). A job whose execution
        finished (its line paid) never joins: it is completed from its result, not sent again."""
        joined: list[int] = []
        async with self._db.transaction() as conn:
            row_id = await insert_id(
                conn,
                self._db.dialect,
                "INSERT INTO remote_batches (provider, batch_id, model, tag, step, lines, created_at)"
                " VALUES (?,?,?,?,?,?,?)",
                (provider, batch_id, model, tag, Step.GATHERED.value, len(job_ids), now),
            )
            assert row_id is not None  # a plain INSERT inserts its row or raises
            for job_id in job_ids:
                async with conn.execute(
                    f"UPDATE jobs SET state = '{JobState.SUBMITTING.value}',"
                    f" execution = '{Execution.MAYBE.value}', attempts = attempts + 1,"
                    " started_at = COALESCE(started_at, ?), remote_batch = ?, updated_at = ?"
                    f" WHERE id = ? AND state IN ({_GATHERABLE}) AND remote_batch IS NULL"
                    f" AND execution <> '{Execution.FINISHED.value}'",
                    (now, row_id, now, job_id),
                ) as cursor:
                    if cursor.rowcount:
                        joined.append(job_id)
            if not joined:
                await conn.execute("DELETE FROM remote_batches WHERE id = ?", (row_id,))
                return None
            await conn.execute("UPDATE remote_batches SET lines = ? WHERE id = ?", (len(joined), row_id))
        found = await self.get(row_id)
        assert found is not None
        return found, joined

    async def get(self, row_id: int) -> RemoteBatchRow | None:
        row = await self._db.fetchone("SELECT * FROM remote_batches WHERE id = ?", (row_id,))
        return RemoteBatchRow.from_sql(row) if row else None

    async def live(self, batch_ids: Sequence[str] | None = None) -> list[RemoteBatchRow]:
        scope, params = "", []
        if batch_ids is not None:
            scope = f" AND batch_id IN ({','.join('?' * len(batch_ids))})"
            params = list(batch_ids)
        rows = await self._db.fetchall(
            f"SELECT * FROM remote_batches WHERE step IN ({_LIVE}){scope} ORDER BY id", params
        )
        return [RemoteBatchRow.from_sql(r) for r in rows]

    async def of_batches(self, batch_ids: Sequence[str]) -> list[RemoteBatchRow]:
        """Every remote batch (live or closed) of these batches, oldest first."""
        if not batch_ids:
            return []
        rows = await self._db.fetchall(
            f"SELECT * FROM remote_batches WHERE batch_id IN ({','.join('?' * len(batch_ids))}) ORDER BY id",
            list(batch_ids),
        )
        return [RemoteBatchRow.from_sql(r) for r in rows]

    async def live_lines(self, provider: str, model: str) -> tuple[int, int]:
        """(live remote batches of the provider, lines of the model enqueued in them)."""
        row = await self._db.fetchone(
            "SELECT COUNT(*) AS n, COALESCE(SUM(CASE WHEN model = ? THEN lines ELSE 0 END), 0) AS l"
            f" FROM remote_batches WHERE provider = ? AND step IN ({_LIVE})",
            (model, provider),
        )
        return (int(row["n"]), int(row["l"])) if row else (0, 0)

    async def update(self, row_id: int, **fields: Any) -> None:
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        values = {k: (v.value if isinstance(v, StrEnum) else v) for k, v in fields.items()}
        async with self._db.transaction() as conn:
            await conn.execute(
                f"UPDATE remote_batches SET {', '.join(f'{k} = ?' for k in values)} WHERE id = ?",
                [*values.values(), row_id],
            )

    async def started(self, row_id: int, remote_id: str, status: str, now: float) -> None:
        """The remote batch exists: its id, and its jobs running, in one transaction."""
        async with self._db.transaction() as conn:
            await conn.execute(
                "UPDATE remote_batches SET remote_id = ?, status = ?, step = ? WHERE id = ?",
                (remote_id, status, Step.STARTED.value, row_id),
            )
            await conn.execute(
                f"UPDATE jobs SET state = '{JobState.RUNNING.value}', updated_at = ?"
                f" WHERE remote_batch = ? AND state IN ({_STARTABLE})",
                (now, row_id),
            )
            await conn.execute(
                "INSERT INTO attempts (job_id, at, kind, outcome, remote_id)"
                " SELECT id, ?, 'start', 'accepted', ? FROM jobs WHERE remote_batch = ?",
                (now, remote_id, row_id),
            )

    async def keys_in_flight(self, provider: str, batch_ids: Sequence[str] | None = None) -> set[str]:
        """Cache keys of the provider's jobs in live remote batches (of these batches, if given):
        images being made."""
        scope, params = "", [provider]
        if batch_ids is not None:
            scope = f" AND r.batch_id IN ({','.join('?' * len(batch_ids))})"
            params += list(batch_ids)
        rows = await self._db.fetchall(
            "SELECT DISTINCT j.cache_key FROM jobs j JOIN remote_batches r ON j.remote_batch = r.id"
            f" WHERE r.provider = ? AND r.step IN ({_LIVE}){scope}",
            params,
        )
        return {str(r["cache_key"]) for r in rows}

    async def members(self, row_id: int) -> list[JobRow]:
        """The jobs still belonging to the remote batch (their outcome not yet recorded)."""
        rows = await self._db.fetchall("SELECT * FROM jobs WHERE remote_batch = ? ORDER BY id", (row_id,))
        return [JobRow.from_sql(r) for r in rows]

    async def rows_of_jobs(self, job_ids: Sequence[int]) -> list[RemoteBatchRow]:
        if not job_ids:
            return []
        rows = await self._db.fetchall(
            "SELECT DISTINCT r.* FROM remote_batches r JOIN jobs j ON j.remote_batch = r.id"
            f" WHERE j.id IN ({','.join('?' * len(job_ids))}) AND r.step IN ({_LIVE})",
            list(job_ids),
        )
        return [RemoteBatchRow.from_sql(r) for r in rows]

    async def close(self, row_id: int, message: str | None, now: float) -> None:
        await self.update(row_id, step=Step.CLOSED, message=message, closed_at=now)
