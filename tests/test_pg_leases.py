"""Account leases and fencing on a real PostgreSQL server, in process: two daemons' fleets (one
store each, as two machines would have), the lease taken over with epoch + 1, the old owner's writes
matching nothing, and a daemon whose lock connection breaks starting nothing at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from tests.deadlines import patience
from tests.test_store import make_jobs
from tests.test_store_contract import batch_row
from wfbatch.core.states import JobState
from wfbatch.store import StoreApi, fleet_for, open_store
from wfbatch.store.pg.leases import PgFleet

ACCOUNT = ("local", "default")  # make_jobs' provider


@pytest.fixture
async def two(pg_database: str, tmp_path: Path) -> AsyncIterator[list[StoreApi]]:
    stores = [await open_store(pg_database, tmp_path / "unused.db") for _ in range(2)]
    try:
        yield stores
    finally:
        for store in stores:
            await store.close()


def fleet_of(store: StoreApi, wake: asyncio.Event, lease_timeout: float = 1.0) -> PgFleet:
    fleet = fleet_for(store, lease_timeout, wake.set)
    assert isinstance(fleet, PgFleet)
    return fleet


async def wanted() -> set[tuple[str, str]]:
    return {ACCOUNT}


async def until(predicate: object, what: str) -> None:
    deadline = time.monotonic() + patience(20)
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_takeover_moves_the_epoch_on_and_fences_the_old_owner(two: list[StoreApi]) -> None:
    first_store, second_store = two
    await first_store.batches.insert_batch(batch_row(), make_jobs(2))
    job, other = await first_store.jobs.jobs_for_batch("b1")
    first, second = fleet_of(first_store, asyncio.Event()), fleet_of(second_store, asyncio.Event())
    taken = asyncio.Event()
    await first.start(lambda: None, wanted)
    await second.start(taken.set, wanted)
    try:
        assert first.holds(*ACCOUNT) and not second.holds(*ACCOUNT)
        assert await first.claim(job) and not await second.claim(job)  # one daemon's admission
        assert await first_store.jobs.transition(
            job.id, [JobState.QUEUED], JobState.SUBMITTING, account="default",
            **first.claim_fields(*ACCOUNT),
        )
        # The first daemon vanishes without a word: its lock goes with its connection, and its
        # heartbeat stops (its task is stopped, its rows stay).
        assert first._task is not None
        first._task.cancel()
        await asyncio.gather(first._task, return_exceptions=True)
        assert first._conn is not None
        await first._conn.close()
        await asyncio.wait_for(taken.wait(), patience(20))
        assert second.holds(*ACCOUNT) and second.held()[ACCOUNT] == 2
        adopted = await second_store.jobs.get_job(job.id)
        assert adopted is not None and second.adoptable(adopted)
        # The old owner's writes about the job match nothing now; the new owner's do.
        assert not await first_store.jobs.transition(job.id, [JobState.SUBMITTING], JobState.RUNNING)
        assert not await first_store.jobs.update_job(job.id, remote_id="exec-late")
        assert await second_store.jobs.transition(job.id, [JobState.SUBMITTING], JobState.RUNNING)
        after = await second_store.jobs.get_job(job.id)
        assert after is not None and after.state is JobState.RUNNING and after.remote_id is None
        # Money too: the old owner's charge is refused, the new owner's recorded (once).
        assert await first_store.ledger.settle_finished(job.id, 1.0, None) is None
        assert await second_store.ledger.settle_finished(job.id, 1.0, None) == 1.0
        assert await second_store.ledger.charged(batch_id="b1") == 1.0
        # A queued job the vanished daemon had claimed is free once its heartbeat is stale.
        assert await first.claim(other)  # (its store still answers: only its fleet stopped)
        assert await second.claim(other)
    finally:
        await second.stop()
        await first.stop()


async def test_a_broken_lock_connection_drops_every_account_at_once(
    two: list[StoreApi], pg_server: str
) -> None:
    store = two[0]
    fleet = fleet_of(store, asyncio.Event(), lease_timeout=3.0)
    retaken = asyncio.Event()
    await fleet.start(retaken.set, wanted)
    try:
        assert fleet.holds(*ACCOUNT) and fleet._conn is not None
        retaken.clear()  # (set by the first take, at start)
        pid = fleet._conn.info.backend_pid
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        # Self-fencing: the LISTEN on the lock connection fails, and the account is dropped...
        await until(lambda: not fleet.holds(*ACCOUNT), "the account to be dropped")
        # ...then taken back on a new connection, its lease still its own (same epoch).
        await asyncio.wait_for(retaken.wait(), patience(20))
        assert fleet.held() == {ACCOUNT: 1}
    finally:
        await fleet.stop()


async def test_a_long_silent_daemon_serving_nothing_is_no_longer_listed(two: list[StoreApi]) -> None:
    fleet = fleet_of(two[0], asyncio.Event())
    records = fleet.records
    await records.register("gone:1:a", "gone", 1, 100.0)
    await records.register("holder:2:b", "holder", 2, 100.0)
    assert await records.take_lease("local", "other", "holder:2:b", 100.0, 0.0) == 1
    assert await records.prune(silent_before=1000.0) == 1
    assert [d.id for d in await records.daemons()] == ["holder:2:b"]  # still serves an account


async def test_new_work_from_another_daemon_wakes_this_one(two: list[StoreApi]) -> None:
    """LISTEN/NOTIFY: jobs queued through one store wake the other daemon's engine at once (the
    polling stays as the fallback)."""
    woken = asyncio.Event()
    fleet = fleet_of(two[0], woken, lease_timeout=30.0)  # its own rounds are far apart
    await fleet.start(lambda: None, wanted)
    try:
        woken.clear()
        await two[1].batches.insert_batch(batch_row(), make_jobs(3))
        await asyncio.wait_for(woken.wait(), patience(10))
    finally:
        await fleet.stop()


async def test_a_job_waiting_again_with_nothing_started_is_anyones(two: list[StoreApi]) -> None:
    first_store, second_store = two
    await first_store.batches.insert_batch(batch_row(), make_jobs(1))
    (job,) = await first_store.jobs.jobs_for_batch("b1")
    first, second = fleet_of(first_store, asyncio.Event()), fleet_of(second_store, asyncio.Event())
    await first.start(lambda: None, wanted)
    await second.start(lambda: None, wanted)
    try:
        assert await first.claim(job) and not await second.claim(job)
        await first.unclaim(job)  # its run ended with the job queued (held back), nothing reserved
        assert await second.claim(job)
    finally:
        await second.stop()
        await first.stop()


async def changed_of(fleet: PgFleet, batch_id: str) -> bool:
    """Whether `fleet` is told of `batch_id` among the batches it writes with changes: asked until
    its next look (it looks every `tick`), bounded."""
    deadline = time.monotonic() + patience(10)
    while time.monotonic() < deadline:
        if batch_id in await fleet.manifests_changed():
            return True
        await asyncio.sleep(fleet.tick / 2)
    return False


async def test_a_batch_manifest_has_one_writer_and_is_taken_over_when_it_is_gone(
    two: list[StoreApi],
) -> None:
    first_store, second_store = two
    await first_store.batches.insert_batch(batch_row(), make_jobs(2))
    first, second = fleet_of(first_store, asyncio.Event()), fleet_of(second_store, asyncio.Event())
    await first.start(lambda: None, wanted)
    await second.start(lambda: None, wanted)
    try:
        # Two daemons taking a batch nobody writes yet, at once: one winner.
        won = await asyncio.gather(first.writes_manifest("b1"), second.writes_manifest("b1"))
        assert sorted(won) == [False, True]
        writer, other = (first, second) if won[0] else (second, first)
        assert await writer.writes_manifest("b1") and not await other.writes_manifest("b1")
        # The writer is told of the batch's changes (any daemon's); the other, at its first look,
        # not: the batch has a live writer.
        assert "b1" not in await other.manifests_changed()
        assert await changed_of(writer, "b1")
        # The writer gone (a clean stop forgets its row, as a prune does): the other, told of the
        # batch's next change, takes it.
        await writer.stop()
        job = (await second_store.jobs.jobs_for_batch("b1"))[0]
        assert await second_store.jobs.update_job(job.id, attempts=1)
        assert await changed_of(other, "b1")
        assert await other.writes_manifest("b1")
    finally:
        await first.stop()
        await second.stop()
