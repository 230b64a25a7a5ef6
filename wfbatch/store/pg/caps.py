"""Caps exact across daemons: the ledger on PostgreSQL, whose reservations are counter-row updates.

SQLite's `reserve_under_caps` sums the ledger and then inserts, exact only because one writer at a
time can run. Ported literally to PostgreSQL's READ COMMITTED, two daemons read the same sum and
both insert (measured: 36 reserved against a cap of 30). Here each cap scope is one row of
`cap_exposure` (migration 14), and reserving is, per scope, one conditional statement:

    UPDATE cap_exposure SET exposure = exposure + cost WHERE scope = ? AND exposure + cost <= cap

A statement that waits for another transaction's lock on the row re-checks its WHERE against the
row's newest version, so no two reservations can both pass on the same exposure. Scopes are taken
in one fixed order (the batch, the provider's day, then the account's day), so
two reservations never hold one row each while waiting for the other's. The ledger row is still
written: it is the audit trail, and a trigger books every other ledger row (release, charge) on the
same counters.
"""

from __future__ import annotations

import time
from typing import Literal

from wfbatch.core.accounts import key_account_of
from wfbatch.store.ledger import SqliteLedger
from wfbatch.store.rows import CapReached

_ENSURE = "INSERT INTO cap_exposure (scope, exposure) VALUES (?, 0) ON CONFLICT (scope) DO NOTHING"
_TAKE = (
    "UPDATE cap_exposure SET exposure = exposure + ? WHERE scope = ?"
    " AND (CAST(? AS DOUBLE PRECISION) IS NULL OR exposure + ? <= CAST(? AS DOUBLE PRECISION) + 1e-9)"
    " RETURNING exposure"
)


def account_day_scope(provider: str, account: str, day: str) -> str:
    """The counter row of an account's day; the same text as migration 17's trigger builds."""
    return f"account-day:{provider}:{key_account_of(account)}:{day}"


class _Refused(Exception):
    """Rolls back the scopes already taken when a later one refuses."""

    def __init__(self, reached: CapReached) -> None:
        self.reached = reached


class PostgresLedger(SqliteLedger):
    """The ledger's reads and settlements as on SQLite (their decision reads lock the job's row:
    `for_update`); reservations through the counter rows."""

    async def reserve_under_caps(
        self,
        job_id: int,
        batch_id: str,
        provider: str,
        cost: float,
        *,
        budget: float | None,
        daily_cap: float | None,
        day: str,
        account: str | None = None,
        account_cap: float | None = None,
    ) -> CapReached | None:
        now = time.time()
        scopes: list[tuple[str, float | None, Literal["budget", "daily", "account_daily"]]] = [
            (f"batch:{batch_id}", budget, "budget"),
            (f"provider-day:{provider}:{day}", daily_cap, "daily"),
        ]
        if account is not None:
            # A key's account and its per-workflow ones (`studio/wf_a`) spend one cap.
            scopes.append((account_day_scope(provider, account, day), account_cap, "account_daily"))
        try:
            async with self._db.transaction() as conn:
                # The job's row first (the order every settlement takes too): another daemon may have
                # reserved for this job since it was read; then that reservation is the job's, and
                # a second would count its cost twice.
                async with conn.execute(
                    "SELECT reserved FROM jobs WHERE id = ? FOR UPDATE", (job_id,)
                ) as cursor:
                    job = await cursor.fetchone()
                if job is not None and job[0] is not None:
                    return None
                for scope, cap, kind in scopes:
                    # Every reservation adds to the rows, capped or not: they equal the ledger's sums.
                    await conn.execute(_ENSURE, (scope,))
                    async with conn.execute(_TAKE, (cost, scope, cap, cost, cap)) as cursor:
                        taken = await cursor.fetchone()
                    if taken is None and cap is not None:
                        async with conn.execute(
                            "SELECT exposure FROM cap_exposure WHERE scope = ?", (scope,)
                        ) as cursor:
                            row = await cursor.fetchone()
                        raise _Refused(CapReached(kind, float(row[0]) if row else 0.0, cap))
                if cost:
                    await conn.execute(
                        "INSERT INTO ledger (job_id, batch_id, provider, day, kind, credits, at, account)"
                        " VALUES (?,?,?,?,'reserve',?,?,?)",
                        (job_id, batch_id, provider, day, cost, now, account),
                    )
                    await conn.execute("UPDATE jobs SET reserved = ? WHERE id = ?", (cost, job_id))
        except _Refused as refused:
            return refused.reached
        return None
