"""The credit ledger: what each job reserved before it was sent, and what the provider charged.

Rows are `reserve` (+estimate, before the request), `release` (−the reservation, when the job
finishes or gives up) and `charge` (+what the provider charged, or the estimate when it does not
say). The sum of a scope's rows is its exposure: credits charged plus credits still reserved.
"""

from __future__ import annotations

import datetime as dt
import time

from wfbatch.store.store import Store


def ledger_day(timestamp: float) -> str:
    """Days are local calendar days, like the providers' daily caps."""
    return dt.datetime.fromtimestamp(timestamp).date().isoformat()


class Ledger:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def reserve(self, job_id: int, batch_id: str, provider: str, credits: float) -> None:
        now = time.time()
        async with self._store.transaction() as conn:
            await conn.execute(
                "INSERT INTO ledger (job_id, batch_id, provider, day, kind, credits, at)"
                " VALUES (?,?,?,?,'reserve',?,?)",
                (job_id, batch_id, provider, ledger_day(now), credits, now),
            )
            await conn.execute("UPDATE jobs SET reserved = ? WHERE id = ?", (credits, job_id))

    async def settle(self, job_id: int, charged: float | None) -> None:
        """Release the job's reservation and record the charge (None: the provider charged nothing
        we know of, e.g. a failed execution)."""
        now = time.time()
        async with self._store.transaction() as conn:
            async with conn.execute(
                "SELECT batch_id, provider, reserved FROM jobs WHERE id = ?", (job_id,)
            ) as cur:
                row = await cur.fetchone()
            if row is None:
                return
            batch_id, provider, reserved = row["batch_id"], row["provider"], row["reserved"]
            day = ledger_day(now)
            if reserved is not None:
                await conn.execute(
                    "INSERT INTO ledger (job_id, batch_id, provider, day, kind, credits, at)"
                    " VALUES (?,?,?,?,'release',?,?)",
                    (job_id, batch_id, provider, day, -reserved, now),
                )
            if charged:
                await conn.execute(
                    "INSERT INTO ledger (job_id, batch_id, provider, day, kind, credits, at)"
                    " VALUES (?,?,?,?,'charge',?,?)",
                    (job_id, batch_id, provider, day, charged, now),
                )
            await conn.execute("UPDATE jobs SET reserved = NULL WHERE id = ?", (job_id,))

    async def release(self, job_id: int) -> None:
        await self.settle(job_id, None)

    async def batch_exposure(self, batch_id: str) -> float:
        row = await self._store.fetchone(
            "SELECT COALESCE(SUM(credits), 0) AS c FROM ledger WHERE batch_id = ?", (batch_id,)
        )
        return float(row["c"]) if row else 0.0

    async def provider_exposure(self, provider: str, day: str) -> float:
        row = await self._store.fetchone(
            "SELECT COALESCE(SUM(credits), 0) AS c FROM ledger WHERE provider = ? AND day = ?",
            (provider, day),
        )
        return float(row["c"]) if row else 0.0

    async def charged(self, *, batch_id: str | None = None, provider: str | None = None) -> float:
        where, params = ["kind = 'charge'"], []
        if batch_id:
            where.append("batch_id = ?")
            params.append(batch_id)
        if provider:
            where.append("provider = ?")
            params.append(provider)
        row = await self._store.fetchone(
            f"SELECT COALESCE(SUM(credits), 0) AS c FROM ledger WHERE {' AND '.join(where)}", params
        )
        return float(row["c"]) if row else 0.0

    async def reserved_total(self) -> float:
        row = await self._store.fetchone("SELECT COALESCE(SUM(reserved), 0) AS c FROM jobs")
        return float(row["c"]) if row else 0.0

    async def leaked_reservations(self) -> list[int]:
        """Jobs holding a reservation although no execution of theirs exists (a crash between the
        reservation and its release): the engine releases them at start. A job waiting to retry the
        download or poll of an existing execution keeps its reservation: that execution may charge."""
        rows = await self._store.fetchall(
            "SELECT id FROM jobs WHERE reserved IS NOT NULL AND state NOT IN ('submitting', 'running')"
            " AND NOT (state IN ('retrying', 'queued') AND remote_id IS NOT NULL)"
        )
        return [int(r["id"]) for r in rows]
