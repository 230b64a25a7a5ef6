"""The credit ledger: what each job reserved before it was sent, and what the provider charged.

Rows are `reserve` (+estimate, before the request), `release` (−the reservation, when the job
finishes or gives up) and `charge` (+what the provider charged, or the estimate when it does not
say). The sum of a scope's rows is its exposure: credits charged plus credits still reserved.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

from wfbatch.core.accounts import key_account_of
from wfbatch.core.states import Execution
from wfbatch.store import cost_reads
from wfbatch.store.database import SqlConnection, SqlDatabase, for_update
from wfbatch.store.fleet import JOB_FENCE
from wfbatch.store.rows import CapReached, CostLine, PossibleDuplicate

__all__ = ["CapReached", "SqliteLedger", "ledger_day", "write_release_and_charge"]


def ledger_day(timestamp: float) -> str:
    """Days are local calendar days, like the providers' daily caps."""
    return dt.datetime.fromtimestamp(timestamp).date().isoformat()


async def write_release_and_charge(
    conn: SqlConnection, job_id: int, row: Any, charged: float, now: float
) -> None:
    """Inside the caller's transaction: a `release` row for the job's reservation (`row` has its
    batch_id, provider and reserved) and a `charge` row for what it was charged, if anything."""
    batch_id, provider, reserved = row["batch_id"], row["provider"], row["reserved"]
    day = ledger_day(now)
    if reserved is not None:
        # The release names the account its reservation named: the job's own column may still be
        # unset (refused before it started) or name the account of an earlier start that never left,
        # and an account's daily cap must get back exactly what was taken from it.
        async with conn.execute(
            "SELECT account FROM ledger WHERE job_id = ? AND kind = 'reserve' ORDER BY id DESC LIMIT 1",
            (job_id,),
        ) as cur:
            reservation = await cur.fetchone()
        account = reservation["account"] if reservation is not None else None
        await conn.execute(
            "INSERT INTO ledger (job_id, batch_id, provider, day, kind, credits, at, account)"
            " VALUES (?,?,?,?,'release',?,?,?)",
            (job_id, batch_id, provider, day, -reserved, now, account),
        )
    if charged:
        await conn.execute(
            "INSERT INTO ledger (job_id, batch_id, provider, day, kind, credits, at)"
            " VALUES (?,?,?,?,'charge',?,?)",
            (job_id, batch_id, provider, day, charged, now),
        )


# Exposure: what is charged or reserved. Read inside a reservation's transaction (`_exposure`) or
# on its own (`batch_exposure`, `provider_exposure`), with the same statement.
_EXPOSURE = "SELECT COALESCE(SUM(credits), 0) AS c FROM ledger WHERE "
_BY_BATCH = "batch_id = ?"
_BY_PROVIDER_DAY = "provider = ? AND day = ?"
_BY_ACCOUNT_DAY = "provider = ? AND day = ? AND (account = ? OR substr(account, 1, ?) = ?)"


async def _exposure(conn: SqlConnection, where: str, params: tuple[Any, ...]) -> float:
    async with conn.execute(_EXPOSURE + where, params) as cur:
        row = await cur.fetchone()
    return float(row["c"]) if row else 0.0


class SqliteLedger:
    """The ledger and the caps on it, on the store's one database."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db
        self._owner: str | None = None

    def fence(self, owner: str | None) -> None:
        """Settling a job's money (a charge, a release) needs the job to be `owner`'s under its
        current lease epoch, as the jobs' writes do (store/fleet.py); None: no fence."""
        self._owner = owner

    def _fence(self) -> tuple[str, tuple[Any, ...]]:
        return ("", ()) if self._owner is None else (JOB_FENCE, (self._owner, self._owner))

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
        """Check the batch's budget and the provider's daily cap for `cost` and reserve it, in ONE
        transaction. Checked outside it, another job's reservation could come between the check
        and this one and let a job past the budget (seen under load: 6 executions for a budget of
        5, when reads could still see a settlement half done)."""
        now = time.time()
        async with self._db.transaction() as conn:
            if budget is not None:
                exposure = await _exposure(conn, _BY_BATCH, (batch_id,))
                if exposure + cost > budget + 1e-9:
                    return CapReached("budget", exposure, budget)
            if daily_cap is not None:
                exposure = await _exposure(conn, _BY_PROVIDER_DAY, (provider, day))
                if exposure + cost > daily_cap + 1e-9:
                    return CapReached("daily", exposure, daily_cap)
            if account_cap is not None and account is not None:
                # A key's account and its per-workflow ones (`studio/wf_a`) spend one cap.
                owner = key_account_of(account)
                params = (provider, day, owner, len(owner) + 1, f"{owner}/")
                exposure = await _exposure(conn, _BY_ACCOUNT_DAY, params)
                if exposure + cost > account_cap + 1e-9:
                    return CapReached("account_daily", exposure, account_cap)
            if cost:
                # The account is named here: the job's own column is written only once it starts.
                await conn.execute(
                    "INSERT INTO ledger (job_id, batch_id, provider, day, kind, credits, at, account)"
                    " VALUES (?,?,?,?,'reserve',?,?,?)",
                    (job_id, batch_id, provider, day, cost, now, account),
                )
                await conn.execute("UPDATE jobs SET reserved = ? WHERE id = ?", (cost, job_id))
        return None

    async def reserve(self, job_id: int, batch_id: str, provider: str, credits: float) -> None:
        """Reserve `credits` for the job whatever the caps say."""
        day = ledger_day(time.time())
        await self.reserve_under_caps(
            job_id, batch_id, provider, credits, budget=None, daily_cap=None, day=day
        )

    async def settle_finished(
        self, job_id: int, charged: float | None, result: dict[str, Any] | None
    ) -> float | None:
        """The job's execution finished with an image: in ONE transaction release its reservation,
        record the charge (None: the reservation, i.e. the estimate), keep `result` (so a crash
        before the download re-downloads instead of re-executing) and mark the execution finished.
        Returns the credits recorded, or None if it was recorded before (a resumed job): a charge
        is never recorded twice."""
        now = time.time()
        fence, fenced = self._fence()
        async with self._db.transaction() as conn:
            async with conn.execute(
                "SELECT batch_id, provider, reserved, execution FROM jobs WHERE id = ?"
                + fence
                + for_update(self._db),
                (job_id, *fenced),
            ) as cur:
                row = await cur.fetchone()
            if row is None or row["execution"] == Execution.FINISHED.value:
                return None
            reserved = row["reserved"]
            credits = reserved if charged is None else charged
            await write_release_and_charge(conn, job_id, row, credits or 0.0, now)
            await conn.execute(
                "UPDATE jobs SET reserved = NULL, credits = ?, execution = ?,"
                " result = COALESCE(?, result), updated_at = ? WHERE id = ?",
                (credits, Execution.FINISHED.value, json.dumps(result) if result else None, now, job_id),
            )
        return credits or 0.0

    async def release(self, job_id: int) -> None:
        """Give back the job's reservation: its execution is known not to charge (or never began).
        A job whose execution may exist keeps it: that execution may still charge (with several
        daemons, the start that lost the race to start the job must not give back the winner's)."""
        now = time.time()
        fence, fenced = self._fence()
        async with self._db.transaction() as conn:
            async with conn.execute(
                "SELECT batch_id, provider, reserved, execution FROM jobs WHERE id = ?"
                + fence
                + for_update(self._db),
                (job_id, *fenced),
            ) as cur:
                row = await cur.fetchone()
            if row is None or row["reserved"] is None or row["execution"] == Execution.MAYBE.value:
                return
            await write_release_and_charge(conn, job_id, row, 0.0, now)
            await conn.execute("UPDATE jobs SET reserved = NULL WHERE id = ?", (job_id,))

    async def assume_charged(self, job_id: int) -> None:
        """An execution that may still charge is abandoned (its job got a new prompt): its
        reservation becomes a charge, so a budget never counts on money that may be spent."""
        now = time.time()
        fence, fenced = self._fence()
        async with self._db.transaction() as conn:
            async with conn.execute(
                "SELECT batch_id, provider, reserved FROM jobs WHERE id = ?" + fence + for_update(self._db),
                (job_id, *fenced),
            ) as cur:
                row = await cur.fetchone()
            if row is None or row["reserved"] is None:
                return
            await write_release_and_charge(conn, job_id, row, float(row["reserved"]), now)
            await conn.execute("UPDATE jobs SET reserved = NULL WHERE id = ?", (job_id,))

    async def batch_exposure(self, batch_id: str) -> float:
        row = await self._db.fetchone(_EXPOSURE + _BY_BATCH, (batch_id,))
        return float(row["c"]) if row else 0.0

    async def provider_exposure(self, provider: str, day: str) -> float:
        row = await self._db.fetchone(_EXPOSURE + _BY_PROVIDER_DAY, (provider, day))
        return float(row["c"]) if row else 0.0

    async def charged(
        self, *, batch_id: str | None = None, provider: str | None = None, account: str | None = None
    ) -> float:
        where, params = ["kind = 'charge'"], []
        if account:
            where.append("account = ?")
            params.append(account)
        if batch_id:
            where.append("batch_id = ?")
            params.append(batch_id)
        if provider:
            where.append("provider = ?")
            params.append(provider)
        row = await self._db.fetchone(
            f"SELECT COALESCE(SUM(credits), 0) AS c FROM ledger WHERE {' AND '.join(where)}", params
        )
        return float(row["c"]) if row else 0.0

    async def reserved_total(self) -> float:
        row = await self._db.fetchone("SELECT COALESCE(SUM(reserved), 0) AS c FROM jobs")
        return float(row["c"]) if row else 0.0

    async def leaked_reservations(self, reserved_before: float | None = None) -> list[int]:
        """Jobs holding a reservation although no execution of theirs may exist (a crash between the
        reservation and the start): the engine releases them at start. A job whose execution may
        exist keeps its reservation whatever its state — canceled and failed ones included — until
        the provider says it ended: that execution may still charge. `reserved_before`: only
        reservations older than that (several daemons: a younger one is another daemon's start
        in progress, between its reservation and its move to submitting)."""
        age, params = "", []
        if reserved_before is not None:
            age = (
                " AND NOT EXISTS (SELECT 1 FROM ledger l WHERE l.job_id = jobs.id AND l.kind = 'reserve'"
                " AND l.at >= ?)"
            )
            params.append(reserved_before)
        rows = await self._db.fetchall(
            "SELECT id FROM jobs WHERE reserved IS NOT NULL AND execution <> 'maybe'"
            " AND state NOT IN ('submitting', 'running')" + age,
            params,
        )
        return [int(r["id"]) for r in rows]

    async def cost_lines(self, *, since: str | None = None, until: str | None = None) -> list[CostLine]:
        return await cost_reads.cost_lines(self._db, since, until)

    async def average_charges(self) -> dict[tuple[str, str | None], float]:
        return await cost_reads.average_charges(self._db)

    async def possible_duplicates(
        self, *, since: str | None = None, until: str | None = None
    ) -> list[PossibleDuplicate]:
        return await cost_reads.possible_duplicates(self._db, since, until)
