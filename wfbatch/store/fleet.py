"""Several daemons on one database: who runs (`daemons`), which daemon serves each provider account
(`account_leases`, with an epoch that a takeover moves on), and the owner stamp of jobs in flight.

A lease row alone does not make a daemon the server of an account: on PostgreSQL it must also hold
the account's session advisory lock (store/pg/leases.py), so that a daemon that vanished (its
connection closed) and stopped heart-beating is the only one whose accounts are taken. On SQLite the
one daemon of the HOME holds every account and writes no lease (engine/loop/fleet.py's `SoloFleet`).

Takeover is adoption, never a re-run: `adopt_in_flight` restamps the account's `submitting`,
`running` and `retrying` jobs with the new owner and epoch; the engine then resumes them through its
start-up recovery (reconcile or re-send with the stored idempotency key, poll).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from wfbatch.core.states import JobState
from wfbatch.store.database import SqlDatabase, for_update
from wfbatch.store.rows import JobRow

# A write of the engine about a job (store/jobs.py) or its money (store/ledger.py) matches only
# while the job is this daemon's under the epoch of the lease it holds now. A queued job (nobody's
# yet) and one never stamped (the SQLite daemon's, older rows) are anyone's.
JOB_FENCE = (
    f" AND (owner IS NULL OR state = '{JobState.QUEUED.value}' OR (owner = ? AND owner_epoch ="
    " (SELECT l.epoch FROM account_leases l WHERE l.provider = jobs.provider AND l.account = jobs.account"
    " AND l.daemon_id = ?)))"
)

ADOPTED_STATES = (JobState.SUBMITTING, JobState.RUNNING, JobState.RETRYING)
"""What a new owner of an account takes with it: jobs whose execution exists or may."""


Wanted = Callable[[], Awaitable[set[tuple[str, str]]]]
"""The (provider, account) pairs an engine asks to serve now."""


class Fleet(Protocol):
    def holds(self, provider: str, account: str) -> bool:
        """Whether this engine may start work on the account now."""
        ...

    def claim_fields(self, provider: str, account: str) -> dict[str, Any]:
        """What a job's move to `submitting` writes to say whose it is."""
        ...

    def adoptable(self, job: JobRow) -> bool:
        """Whether a job found in flight is this engine's to resume."""
        ...

    async def start(self, taken: Callable[[], None], wanted: Wanted) -> None:
        """Take the accounts it can (`wanted`: the configured ones); `taken` is called whenever
        accounts were taken later (their jobs in flight are then this engine's)."""
        ...

    async def stop(self) -> None: ...

    async def claim(self, job: JobRow) -> bool:
        """Make a queued job this engine's to admit and start (False: another daemon's)."""
        ...

    async def unclaim(self, job: JobRow) -> None:
        """This engine's run of the job ended with it waiting again: let any daemon take it."""
        ...

    async def members(self) -> tuple[str | None, list[DaemonRow]]:
        """(this daemon's id, every daemon registered on the database); (None, []) alone."""
        ...

    async def writes_manifest(self, batch_id: str) -> bool:
        """Whether this engine writes the batch's manifest (and contact sheet) now: one writer per
        batch across daemons sharing an output folder. Takes it over from a daemon that vanished."""
        ...

    async def manifests_changed(self) -> set[str]:
        """Batches whose manifest this engine writes whose jobs another daemon changed since it
        last asked (this engine's own changes too); empty alone: it knows its own changes."""
        ...

    def leaks_before(self, now: float) -> float | None:
        """Reservations made before this with no execution started are leaked (a crash between the
        two); None: any such reservation is (one daemon: none of it is being started right now)."""
        ...


@dataclass(frozen=True)
class DaemonRow:
    id: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    accounts: tuple[str, ...]
    """"provider/account" of each lease it holds."""


@dataclass(frozen=True)
class Lease:
    provider: str
    account: str
    daemon_id: str
    epoch: int
    renewed_at: float


class FleetRecords:
    """The `daemons` and `account_leases` rows, and the owner stamps of jobs."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    async def register(self, daemon_id: str, host: str, pid: int, now: float) -> None:
        await self._db.write(
            "INSERT INTO daemons (id, host, pid, started_at, heartbeat_at) VALUES (?,?,?,?,?)",
            (daemon_id, host, pid, now, now),
        )

    async def heartbeat(self, daemon_id: str, now: float) -> bool:
        """False when the row is gone (another daemon pruned it as dead): this daemon must stop."""
        return await self._db.write("UPDATE daemons SET heartbeat_at = ? WHERE id = ?", (now, daemon_id)) > 0

    async def forget(self, daemon_id: str) -> None:
        """A clean stop: its leases are free at once (no wait for the heartbeat to go stale)."""
        async with self._db.transaction() as conn:
            await conn.execute("DELETE FROM account_leases WHERE daemon_id = ?", (daemon_id,))
            await conn.execute("DELETE FROM daemons WHERE id = ?", (daemon_id,))

    async def prune(self, silent_before: float) -> int:
        """Forget daemons silent since before `silent_before` that serve nothing any more (killed,
        their accounts taken over): `status` stops listing them. How many."""
        return await self._db.write(
            "DELETE FROM daemons WHERE heartbeat_at < ?"
            " AND NOT EXISTS (SELECT 1 FROM account_leases l WHERE l.daemon_id = daemons.id)",
            (silent_before,),
        )

    async def daemons(self) -> list[DaemonRow]:
        rows = await self._db.fetchall("SELECT * FROM daemons ORDER BY started_at, id")
        leases = await self.leases()
        return [
            DaemonRow(
                id=r["id"],
                host=r["host"],
                pid=int(r["pid"]),
                started_at=float(r["started_at"]),
                heartbeat_at=float(r["heartbeat_at"]),
                accounts=tuple(f"{x.provider}/{x.account}" for x in leases if x.daemon_id == r["id"]),
            )
            for r in rows
        ]

    async def leases(self) -> list[Lease]:
        rows = await self._db.fetchall("SELECT * FROM account_leases ORDER BY provider, account")
        return [
            Lease(r["provider"], r["account"], r["daemon_id"], int(r["epoch"]), float(r["renewed_at"]))
            for r in rows
        ]

    async def take_lease(
        self, provider: str, account: str, me: str, now: float, stale_before: float
    ) -> int | None:
        """The account's lease for `me`: its epoch, or None while another daemon holds it and still
        heart-beats. A lease that was free, or whose daemon stopped heart-beating before
        `stale_before` (or is gone), is taken with epoch + 1. The caller holds the account's
        advisory lock on PostgreSQL, so two daemons never get here for one account at once."""
        async with self._db.transaction() as conn:
            async with conn.execute(
                "SELECT l.daemon_id, l.epoch, d.heartbeat_at FROM account_leases l"
                " LEFT JOIN daemons d ON d.id = l.daemon_id WHERE l.provider = ? AND l.account = ?"
                + for_update_of_leases(self._db),
                (provider, account),
            ) as cursor:
                row = await cursor.fetchone()
            if row is None:
                await conn.execute(
                    "INSERT INTO account_leases (provider, account, daemon_id, epoch, renewed_at)"
                    " VALUES (?,?,?,?,?)",
                    (provider, account, me, 1, now),
                )
                return 1
            if row["daemon_id"] == me:
                return int(row["epoch"])
            if row["heartbeat_at"] is not None and float(row["heartbeat_at"]) >= stale_before:
                return None
            epoch = int(row["epoch"]) + 1
            await conn.execute(
                "UPDATE account_leases SET daemon_id = ?, epoch = ?, renewed_at = ?"
                " WHERE provider = ? AND account = ?",
                (me, epoch, now, provider, account),
            )
            return epoch

    async def renew(self, provider: str, account: str, me: str, epoch: int, now: float) -> bool:
        """False: the lease is no longer this daemon's under this epoch (taken over)."""
        changed = await self._db.write(
            "UPDATE account_leases SET renewed_at = ? WHERE provider = ? AND account = ?"
            " AND daemon_id = ? AND epoch = ?",
            (now, provider, account, me, epoch),
        )
        return changed > 0

    async def release(self, provider: str, account: str, me: str) -> None:
        await self._db.write(
            "DELETE FROM account_leases WHERE provider = ? AND account = ? AND daemon_id = ?",
            (provider, account, me),
        )

    async def claim(self, job_id: int, me: str, stale_before: float) -> bool:
        """Make a queued job this daemon's before it reserves credits for it and starts it: one
        daemon's admission per job, so two daemons never reserve twice for one image. A job already
        claimed by a daemon that still heart-beats is left to it; one holding a reservation from
        another daemon (an admission under way, or one left behind by a crash and not yet given back
        by `leaked_reservations`) too. The row lock makes two claims one."""
        # PostgreSQL: SKIP LOCKED, so a row another daemon is claiming or starting right now is
        # passed over at once rather than waited for (it is that daemon's anyway).
        skip = " FOR UPDATE SKIP LOCKED" if for_update(self._db) else ""
        changed = await self._db.write(
            "UPDATE jobs SET owner = ? WHERE id IN (SELECT j.id FROM jobs j WHERE j.id = ?"
            " AND j.state = 'queued' AND (j.owner IS NULL OR j.owner = ? OR (j.reserved IS NULL AND NOT"
            " EXISTS (SELECT 1 FROM daemons d WHERE d.id = j.owner AND d.heartbeat_at >= ?)))" + skip + ")",
            (me, job_id, me, stale_before),
        )
        return changed > 0

    async def unclaim(self, job_id: int, me: str) -> None:
        """The daemon's run of a job ended with the job waiting again (held back, a retry later)
        and nothing of it started: any daemon may take it now. A job whose execution exists or
        may stays with the account that has it (engine/loop/accounts.py `pinned`)."""
        await self._db.write(
            "UPDATE jobs SET owner = NULL WHERE id = ? AND owner = ? AND state IN ('queued', 'retrying')"
            " AND reserved IS NULL AND execution = 'none'",
            (job_id, me),
        )

    async def adopt_in_flight(self, provider: str, account: str, me: str, epoch: int) -> int:
        """Stamp the account's jobs in flight (whoever ran them) with the new owner and epoch; how
        many. From now on the previous owner's writes about them match nothing (the fence)."""
        states = ",".join(f"'{s.value}'" for s in ADOPTED_STATES)
        # And canceled or failed jobs whose execution may still charge: settling them is the owner's.
        return await self._db.write(
            f"UPDATE jobs SET owner = ?, owner_epoch = ? WHERE provider = ? AND account = ?"
            f" AND (state IN ({states}) OR execution = 'maybe')",
            (me, epoch, provider, account),
        )

    async def take_manifest(self, batch_id: str, me: str, stale_before: float) -> tuple[bool, str | None]:
        """Whether `me` writes the batch's manifest now, and whose it was before. A batch nobody
        writes yet becomes `me`'s; one whose daemon stopped heart-beating before `stale_before` (or
        is gone) is taken over. The UPDATE's condition makes two daemons taking it at once one."""
        row = await self._db.fetchone("SELECT owner_daemon FROM batches WHERE id = ?", (batch_id,))
        if row is None:
            return False, None
        before: str | None = row["owner_daemon"]
        if before == me:
            return True, before  # no write: the common case, once per manifest refresh
        changed = await self._db.write(
            "UPDATE batches SET owner_daemon = ? WHERE id = ? AND (owner_daemon IS NULL OR owner_daemon = ?"
            " OR NOT EXISTS (SELECT 1 FROM daemons d WHERE d.id = batches.owner_daemon"
            " AND d.heartbeat_at >= ?))",
            (me, batch_id, me, stale_before),
        )
        if changed > 0:
            return True, before
        row = await self._db.fetchone("SELECT owner_daemon FROM batches WHERE id = ?", (batch_id,))
        return False, None if row is None else row["owner_daemon"]

    async def manifests_changed(self, me: str, since: float, stale_before: float) -> set[str]:
        """Batches with a job changed (by any daemon) since `since` whose manifest `me` writes, or
        nobody alive does: another daemon's work reaches the manifest only through this, and a
        manifest its vanished writer left behind is taken over even when nothing changes after."""
        rows = await self._db.fetchall(
            "SELECT DISTINCT j.batch_id FROM jobs j JOIN batches b ON b.id = j.batch_id"
            " WHERE j.updated_at >= ? AND (b.owner_daemon IS NULL OR b.owner_daemon = ? OR NOT EXISTS"
            " (SELECT 1 FROM daemons d WHERE d.id = b.owner_daemon AND d.heartbeat_at >= ?))",
            (since, me, stale_before),
        )
        return {r["batch_id"] for r in rows}

    async def accounts_in_flight(self) -> set[tuple[str, str]]:
        """(provider, account) of every job whose execution exists or may: accounts that someone
        must serve even when nothing of them is queued."""
        states = ",".join(f"'{s.value}'" for s in ADOPTED_STATES)
        rows = await self._db.fetchall(
            f"SELECT DISTINCT provider, account FROM jobs WHERE state IN ({states}) AND account IS NOT NULL"
        )
        return {(r["provider"], r["account"]) for r in rows}


def for_update_of_leases(db: SqlDatabase) -> str:
    """Lock the lease row only (the LEFT JOIN's daemon row may be absent)."""
    return " FOR UPDATE OF l" if for_update(db) else ""
