"""The store's side of delivery: which objects should be in a batch's bucket, which are, what is
held and why; and the outbox of notifications. Every change is one transaction of the store."""

from __future__ import annotations

import json
import time
from typing import Any

from wfbatch.store.database import SqlConnection, SqlDatabase
from wfbatch.store.rows import DeliveryRow, Notice, NotificationRow

PENDING, DONE, HELD = "pending", "done", "held"
IMAGE, MANIFEST = "image", "manifest"
SENT, GAVE_UP = "sent", "failed"


async def want_object(
    conn: SqlConnection, batch_id: str, job_id: int, want: str | None, now: float
) -> None:
    """Inside a transaction: the job's image should be at `want` in the bucket (None: nowhere).
    Anything held or tried before starts afresh: the worker compares `want` with what is there."""
    if want is None:
        # Nothing to delete unless something was uploaded: only an existing row changes.
        await conn.execute(
            "UPDATE deliveries SET want = NULL, state = CASE WHEN have_url IS NULL THEN ? ELSE ? END,"
            " attempts = 0, next_attempt_at = NULL, error = NULL, updated_at = ? WHERE job_id = ?",
            (DONE, PENDING, now, job_id),
        )
        return
    await conn.execute(
        "INSERT INTO deliveries (batch_id, job_id, kind, want, state, updated_at) VALUES (?,?,?,?,?,?)"
        " ON CONFLICT(job_id) DO UPDATE SET want = excluded.want, state = excluded.state, attempts = 0,"
        " next_attempt_at = NULL, error = NULL, updated_at = excluded.updated_at",
        (batch_id, job_id, IMAGE, want, PENDING, now),
    )



async def queue_notice(conn: SqlConnection, batch_id: str, notice: Notice, now: float) -> bool:
    """Inside a transaction: queue `notice` once per key; False when it was queued before."""
    async with conn.execute(
        "INSERT OR IGNORE INTO notifications (key, batch_id, type, payload, state, created_at)"
        " VALUES (?,?,?,?,?,?)",
        (notice.key, batch_id, notice.kind, json.dumps(notice.payload, ensure_ascii=False), PENDING, now),
    ) as cursor:
        return cursor.rowcount > 0


class SqliteOutbox:
    """Deliveries and notifications: the outbox of what must leave the machine, on the store's one
    database."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    # -- what should be in the bucket ---------------------------------------------------------

    async def review(
        self,
        job_id: int,
        review: str,
        file: str,
        want: str | None,
        *,
        deliver: bool,
        read: tuple[str, str] | None = None,
    ) -> bool:
        """A review decision: the job's new folder and review, and (when `deliver`) the object that
        should now be in the bucket, in one transaction; the batch's manifest goes up again if it
        was uploaded before. `read`: the (review, file) the decision was made on; when the job no
        longer has them, nothing is recorded and False is returned."""
        now = time.time()
        condition = "" if read is None else " AND review = ? AND file = ?"
        params: tuple[str, ...] = () if read is None else read
        async with self._db.transaction() as conn:
            async with conn.execute(
                f"UPDATE jobs SET review = ?, file = ?, updated_at = ? WHERE id = ?{condition}",
                (review, file, now, job_id, *params),
            ) as cursor:
                if not cursor.rowcount:
                    return False
            if not deliver:
                return True
            await want_object(conn, await _batch_of(conn, job_id), job_id, want, now)
            await conn.execute(
                "UPDATE deliveries SET state = ?, attempts = 0, next_attempt_at = NULL, error = NULL,"
                " updated_at = ? WHERE kind = ? AND batch_id = (SELECT batch_id FROM jobs WHERE id = ?)",
                (PENDING, now, MANIFEST, job_id),
            )
        return True

    async def want_manifest(self, batch_id: str) -> None:
        """Upload the batch's manifest (again), once its images are settled."""
        now = time.time()
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO deliveries (batch_id, job_id, kind, want, state, updated_at)"
                " VALUES (?, NULL, ?, 'manifest.json', ?, ?)"
                " ON CONFLICT(batch_id) WHERE kind = 'manifest' DO UPDATE SET state = excluded.state,"
                " attempts = 0, next_attempt_at = NULL, error = NULL, updated_at = excluded.updated_at",
                (batch_id, MANIFEST, PENDING, now),
            )

    # -- the worker's side --------------------------------------------------------------------

    async def due(self, now: float, limit: int, skip: set[int]) -> list[DeliveryRow]:
        """Pending deliveries whose time has come, oldest first. A manifest waits until none of its
        batch's images is pending, so the uploaded one lists them all as delivered."""
        rows = await self._db.fetchall(
            "SELECT * FROM deliveries d WHERE d.state = ? AND (d.next_attempt_at IS NULL"
            " OR d.next_attempt_at <= ?) AND (d.kind = ? OR NOT EXISTS (SELECT 1 FROM deliveries i"
            " WHERE i.batch_id = d.batch_id AND i.kind = ? AND i.state = ?)) ORDER BY d.id LIMIT ?",
            (PENDING, now, IMAGE, IMAGE, PENDING, limit + len(skip)),
        )
        return [row for row in map(DeliveryRow.from_sql, rows) if row.id not in skip][:limit]

    async def next_due(self) -> float | None:
        row = await self._db.fetchone(
            "SELECT MIN(COALESCE(next_attempt_at, 0)) AS t FROM deliveries WHERE state = ?", (PENDING,)
        )
        return None if row is None or row["t"] is None else float(row["t"])

    async def delivered(
        self,
        row: DeliveryRow,
        *,
        have_url: str | None,
        etag: str | None,
        presigned_url: str | None = None,
        presigned_until: float | None = None,
    ) -> None:
        """The bucket now holds `have_url` (None: nothing). Done, unless `want` changed meanwhile (a
        review while the upload ran): then it stays pending and the worker goes again."""
        now = time.time()
        async with self._db.transaction() as conn:
            await conn.execute(
                "UPDATE deliveries SET have_url = ?, etag = ?, delivered_at = ?, presigned_url = ?,"
                " presigned_until = ?, state = CASE WHEN want IS ? THEN ? ELSE ? END, attempts = 0,"
                " next_attempt_at = NULL, error = NULL, updated_at = ? WHERE id = ?",
                (
                    have_url,
                    etag,
                    now if have_url else None,
                    presigned_url,
                    presigned_until,
                    row.want,
                    DONE,
                    PENDING,
                    now,
                    row.id,
                ),
            )

    async def retry_later(self, row: DeliveryRow, at: float, error: str) -> None:
        await self._set(row.id, state=PENDING, attempts=row.attempts + 1, next_attempt_at=at, error=error)

    async def hold(self, row: DeliveryRow, reason: str) -> None:
        await self._set(row.id, state=HELD, attempts=row.attempts + 1, next_attempt_at=None, error=reason)

    async def release_held(self) -> int:
        """Held deliveries are tried again (the configuration changed, or the daemon restarted)."""
        async with self._db.transaction() as conn, conn.execute(
            "UPDATE deliveries SET state = ?, attempts = 0, next_attempt_at = NULL, updated_at = ?"
            " WHERE state = ?",
            (PENDING, time.time(), HELD),
        ) as cursor:
            return cursor.rowcount

    async def _set(self, delivery_id: int, **fields: Any) -> None:
        columns = ", ".join(f"{name} = ?" for name in fields)
        async with self._db.transaction() as conn:
            await conn.execute(
                f"UPDATE deliveries SET {columns}, updated_at = ? WHERE id = ?",
                (*fields.values(), time.time(), delivery_id),
            )

    # -- what people read ---------------------------------------------------------------------

    async def for_batch(self, batch_id: str) -> dict[int | None, DeliveryRow]:
        """By job id; the manifest's row under None."""
        rows = await self._db.fetchall("SELECT * FROM deliveries WHERE batch_id = ?", (batch_id,))
        return {row.job_id: row for row in map(DeliveryRow.from_sql, rows)}

    async def for_job(self, job_id: int) -> DeliveryRow | None:
        row = await self._db.fetchone("SELECT * FROM deliveries WHERE job_id = ?", (job_id,))
        return DeliveryRow.from_sql(row) if row else None

    async def backlog(self, batch_id: str | None = None) -> dict[str, int]:
        """Deliveries by state (pending, held, done), every state present."""
        scope, params = (" WHERE batch_id = ?", (batch_id,)) if batch_id else ("", ())
        rows = await self._db.fetchall(
            f"SELECT state, COUNT(*) AS n FROM deliveries{scope} GROUP BY state", params
        )
        counts = {PENDING: 0, HELD: 0, DONE: 0}
        counts.update({row["state"]: int(row["n"]) for row in rows})
        return counts

    async def held_reasons(self, limit: int = 5) -> list[str]:
        rows = await self._db.fetchall(
            "SELECT DISTINCT error FROM deliveries WHERE state = ? AND error IS NOT NULL LIMIT ?",
            (HELD, limit),
        )
        return [row["error"] for row in rows]

    # -- the notification outbox --------------------------------------------------------------

    async def enqueue_notification(self, key: str, batch_id: str, kind: str, payload: dict[str, Any]) -> bool:
        """Queue a notification once per `key`; False when it was queued before."""
        async with self._db.transaction() as conn:
            return await queue_notice(conn, batch_id, Notice(key, kind, payload), time.time())

    async def due_notifications(self, now: float, limit: int) -> list[NotificationRow]:
        """Pending notifications whose time has come. `batch.finished` waits until the batch has
        no pending delivery: it then tells where everything is."""
        rows = await self._db.fetchall(
            "SELECT * FROM notifications n WHERE n.state = ? AND (n.next_attempt_at IS NULL"
            " OR n.next_attempt_at <= ?) AND (n.type <> 'batch.finished' OR NOT EXISTS (SELECT 1"
            " FROM deliveries d WHERE d.batch_id = n.batch_id AND d.state = ?)) ORDER BY n.id LIMIT ?",
            (PENDING, now, PENDING, limit),
        )
        return [NotificationRow.from_sql(row) for row in rows]

    async def pending_notifications(self) -> int:
        row = await self._db.fetchone(
            "SELECT COUNT(*) AS n FROM notifications WHERE state = ?", (PENDING,)
        )
        return int(row["n"]) if row else 0

    async def notification_sent(self, notification_id: int) -> None:
        await self._set_notification(notification_id, state=SENT, sent_at=time.time(), error=None)

    async def notification_retry(self, row: NotificationRow, at: float, error: str) -> None:
        await self._set_notification(row.id, attempts=row.attempts + 1, next_attempt_at=at, error=error)

    async def notification_failed(self, row: NotificationRow, error: str) -> None:
        await self._set_notification(row.id, state=GAVE_UP, attempts=row.attempts + 1, error=error)

    async def _set_notification(self, notification_id: int, **fields: Any) -> None:
        columns = ", ".join(f"{name} = ?" for name in fields)
        async with self._db.transaction() as conn:
            await conn.execute(
                f"UPDATE notifications SET {columns} WHERE id = ?", (*fields.values(), notification_id)
            )


async def _batch_of(conn: SqlConnection, job_id: int) -> str:
    async with conn.execute("SELECT batch_id FROM jobs WHERE id = ?", (job_id,)) as cursor:
        row = await cursor.fetchone()
    if row is None:
        raise LookupError(f"no job {job_id}")
    return str(row[0])
