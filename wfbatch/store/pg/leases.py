"""One daemon among several on PostgreSQL: its row in `daemons`, the provider accounts it serves, and
its wake-ups.

A daemon serves an account only while it holds BOTH the account's session advisory lock and its
lease row (store/fleet.py) with the epoch it took it under. The lock lives on one dedicated
connection outside the pool (a pooled one goes back after each use), which also LISTENs on
`wfbatch` for new or retried work. That connection is this daemon's life line: when it breaks, the
daemon drops every account at once (self-fencing: it starts nothing more) and takes them back only
through a new lock and a lease that is still its own. A daemon killed outright loses its lock when
the server sees its connection close; its leases are taken by another once its heartbeat is also
older than `lease_timeout`. The taker moves the epoch on and adopts the account's jobs in flight
(the engine's start-up recovery: reconcile or re-send with the stored key, poll), never re-runs them.

PgBouncer in transaction mode must not sit between a daemon and the server: a session advisory lock
and a LISTEN need the same server session for as long as the daemon runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from wfbatch.store import JobRow
from wfbatch.store.fleet import DaemonRow, FleetRecords
from wfbatch.store.pg.db import PostgresDatabase

log = logging.getLogger("wfbatch.fleet")

PRUNE_AFTER = 10
"""Lease timeouts of silence after which a daemon that serves nothing is no longer listed."""

LOCK_SPACE = 0x77666200
"""The first key of every account lock (`pg_try_advisory_lock(int, int)`): wfbatch's own space."""

CHANNEL = "wfbatch"


class PgFleet:
    """`engine.loop.fleet.Fleet` for a daemon on PostgreSQL."""

    def __init__(self, db: PostgresDatabase, *, lease_timeout: float, wake: Callable[[], None]) -> None:
        self._db = db
        self.records = FleetRecords(db)
        self.lease_timeout = lease_timeout
        self.tick = max(0.2, lease_timeout / 6)
        """How often it heart-beats, renews and looks for free accounts."""
        self._wake = wake
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.id = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self._held: dict[tuple[str, str], int] = {}
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._taken: Callable[[], None] = lambda: None
        self._wanted: Callable[[], Awaitable[set[tuple[str, str]]]] | None = None
        self._told_writer: dict[str, str | None] = {}
        """Batches whose manifest another daemon writes, as last logged."""
        self._next_follow = 0.0
        self._followed_at: float | None = None

    # -- what the engine asks ------------------------------------------------------------------

    def holds(self, provider: str, account: str) -> bool:
        return (provider, account) in self._held

    def claim_fields(self, provider: str, account: str) -> dict[str, Any]:
        return {"owner": self.id, "owner_epoch": self._held[(provider, account)]}

    def adoptable(self, job: JobRow) -> bool:
        # Taking an account stamps its jobs in flight with this daemon (`adopt_in_flight`): holding
        # the account is owning them.
        return job.account is not None and self.holds(job.provider, job.account)

    def leaks_before(self, now: float) -> float | None:
        # A daemon moves a job to submitting right after reserving for it; one that stopped for a
        # whole lease timeout in between has been taken over.
        return now - self.lease_timeout

    async def claim(self, job: JobRow) -> bool:
        return await self.records.claim(job.id, self.id, time.time() - self.lease_timeout)

    async def unclaim(self, job: JobRow) -> None:
        await self.records.unclaim(job.id, self.id)

    async def members(self) -> tuple[str | None, list[DaemonRow]]:
        return self.id, await self.records.daemons()

    async def writes_manifest(self, batch_id: str) -> bool:
        mine, before = await self.records.take_manifest(batch_id, self.id, time.time() - self.lease_timeout)
        if mine and before is not None and before != self.id:
            log.info("batch %s: its manifest is written here now (its writer %s is gone)", batch_id, before)
        elif not mine and self._told_writer.get(batch_id) != before:
            # Once per batch and writer: a manifest refresh is asked for after every job.
            self._told_writer[batch_id] = before
            log.info("batch %s: its manifest is written by daemon %s, not this one", batch_id, before)
        return mine

    async def manifests_changed(self) -> set[str]:
        now = time.monotonic()
        if now < self._next_follow:
            return set()
        self._next_follow = now + self.tick
        wall = time.time()
        # Looked back two lease timeouts more than since the last look: a writer that vanished right
        # after a change is seen gone only a lease timeout later, and its last changes must still be
        # in the window then (other machines' clocks too). Rewriting a manifest again is harmless.
        since = (self._followed_at or wall) - 2 * self.lease_timeout
        self._followed_at = wall
        return await self.records.manifests_changed(self.id, since, wall - self.lease_timeout)

    def held(self) -> dict[tuple[str, str], int]:
        return dict(self._held)

    async def start(
        self, taken: Callable[[], None], wanted: Callable[[], Awaitable[set[tuple[str, str]]]]
    ) -> None:
        self._taken, self._wanted = taken, wanted
        await self.records.register(self.id, self.host, self.pid, time.time())
        log.info("daemon %s on %s (lease timeout %.0f s)", self.id, self._db.where, self.lease_timeout)
        await self._round()
        self._task = asyncio.create_task(self._run(), name="fleet")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._held.clear()
        try:
            await self.records.forget(self.id)
        except Exception:  # the server may be gone: the leases then go stale by themselves
            log.exception("could not release this daemon's leases")
        if self._conn is not None:
            await self._conn.close()

    # -- the life line -------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self._listen(self.tick)
                await self._round()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._fence(f"{type(error).__name__}: {error}")
                await asyncio.sleep(self.tick)

    async def _listen(self, seconds: float) -> None:
        """Wake the engine on each notice (new or retried work) until `seconds` have passed."""
        conn = await self._connection()
        async for _ in conn.notifies(timeout=seconds):
            self._wake()

    def _fence(self, why: str) -> None:
        """The lock connection broke (or the database failed us): drop every account at once."""
        if self._held:
            log.warning("lost the account locks (%s): starting nothing until they are taken again", why)
        self._held.clear()
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            asyncio.get_running_loop().create_task(conn.close())

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._held.clear()  # locks die with their connection
            # TCP keepalives both ways (ignored on a Unix socket): a machine that dies without closing
            # its connection loses its locks within about half a lease timeout, not after the
            # system's two hours; and this side notices a dead server or network as soon.
            idle, interval = max(1, int(self.lease_timeout / 4)), max(1, int(self.lease_timeout / 12))
            self._conn = await psycopg.AsyncConnection.connect(
                self._db.url,
                autocommit=True,
                keepalives=1,
                keepalives_idle=idle,
                keepalives_interval=interval,
                keepalives_count=3,
            )
            for setting, value in (("idle", idle), ("interval", interval), ("count", 3)):
                await self._conn.execute(f"SET tcp_keepalives_{setting} = {int(value)}")
            await self._conn.execute(f"LISTEN {CHANNEL}")
        return self._conn

    async def _round(self) -> None:
        """Heart-beat, renew what it holds, take what is free."""
        conn = await self._connection()
        now = time.time()
        if not await self.records.heartbeat(self.id, now):
            await self.records.register(self.id, self.host, self.pid, now)
        for key, epoch in list(self._held.items()):
            if not await self.records.renew(*key, self.id, epoch, now):
                log.warning("%s/%s was taken over: this daemon serves it no more", *key)
                self._held.pop(key, None)
                await self._unlock(conn, key)
        wanted = await self._wanted() if self._wanted is not None else set()
        wanted |= await self.records.accounts_in_flight()
        wanted |= {(lease.provider, lease.account) for lease in await self.records.leases()}
        # A fair share of the accounts, so that several daemons add capacity; an account whose daemon
        # vanished counts that daemon out, so the survivors take it. (What one holds, it keeps.)
        live = sum(1 for d in await self.records.daemons() if d.heartbeat_at >= now - self.lease_timeout)
        share = -(-len(wanted) // max(1, live))
        taken = False
        for key in sorted(wanted - set(self._held)):
            if len(self._held) >= share:
                break
            taken |= await self._try_take(conn, key, now)
        if taken:
            self._taken()
            self._wake()
        await self.records.prune(now - PRUNE_AFTER * self.lease_timeout)

    async def _try_take(self, conn: psycopg.AsyncConnection[Any], key: tuple[str, str], now: float) -> bool:
        provider, account = key
        cursor = await conn.execute(
            "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (LOCK_SPACE, f"{provider}/{account}")
        )
        row = await cursor.fetchone()
        if not row or not row[0]:
            return False
        epoch = await self.records.take_lease(provider, account, self.id, now, now - self.lease_timeout)
        if epoch is None:
            await self._unlock(conn, key)  # its daemon still heart-beats: it reconnects to its lock
            return False
        adopted = await self.records.adopt_in_flight(provider, account, self.id, epoch)
        self._held[key] = epoch
        log.info("serving %s/%s (epoch %d; %d jobs in flight adopted)", provider, account, epoch, adopted)
        return True

    @staticmethod
    async def _unlock(conn: psycopg.AsyncConnection[Any], key: tuple[str, str]) -> None:
        await conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (LOCK_SPACE, f"{key[0]}/{key[1]}"))
