"""Several daemons on one PostgreSQL database, as the store sees them: several `StoreApi` instances
(each its own connection pool, as each daemon has) working on one database at once.

Caps stay exact and an acceptance stays atomic across them; the schema's version is checked at open.
The contract suite (tests/test_store_contract.py) covers the rest against both backends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.test_store import make_jobs
from tests.test_store_contract import batch_row
from wfbatch.engine.intake.control import Accepted, Control, Duplicate
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.home import HomeLayout
from wfbatch.settings import load_settings
from wfbatch.store import CapReached, SchemaTooNew, SchemaTooOld, StoreApi, open_store
from wfbatch.store.ledger import ledger_day
from wfbatch.store.schema import SCHEMA_VERSION

DAEMONS = 4
"""Store instances on the one database: each its own pool of connections, as each daemon has."""


@pytest.fixture
async def stores(pg_database: str, tmp_path: Path) -> AsyncIterator[list[StoreApi]]:
    opened = [await open_store(pg_database, tmp_path / "unused.db") for _ in range(DAEMONS)]
    try:
        yield opened
    finally:
        for store in opened:
            await store.close()


async def _reserve_all(
    stores: list[StoreApi], job_ids: list[int], *, budget: float | None, daily_cap: float | None
) -> list[CapReached | None]:
    """One 1-credit reservation per job, all at once, spread over the stores."""
    day = ledger_day(time.time())
    return await asyncio.gather(
        *(
            stores[i % len(stores)].ledger.reserve_under_caps(
                job_id, "b1", "local", 1.0, budget=budget, daily_cap=daily_cap, day=day
            )
            for i, job_id in enumerate(job_ids)
        )
    )


async def test_a_budget_of_30_admits_exactly_30_of_40_reservations_across_daemons(
    stores: list[StoreApi],
) -> None:
    await stores[0].batches.insert_batch(batch_row(budget=30.0), make_jobs(40))
    jobs = await stores[0].jobs.jobs_for_batch("b1")
    results = await _reserve_all(stores, [job.id for job in jobs], budget=30.0, daily_cap=None)
    assert sum(result is None for result in results) == 30
    assert {result.cap for result in results if result is not None} == {"budget"}
    assert await stores[1].ledger.batch_exposure("b1") == 30.0
    assert await stores[2].ledger.reserved_total() == 30.0


async def test_a_daily_cap_of_30_admits_exactly_30_of_40_reservations_across_daemons(
    stores: list[StoreApi],
) -> None:
    await stores[0].batches.insert_batch(batch_row(), make_jobs(40))
    jobs = await stores[0].jobs.jobs_for_batch("b1")
    results = await _reserve_all(stores, [job.id for job in jobs], budget=None, daily_cap=30.0)
    assert sum(result is None for result in results) == 30
    assert await stores[3].ledger.provider_exposure("local", ledger_day(time.time())) == 30.0


async def test_released_and_charged_credits_free_and_hold_room_under_the_cap(
    stores: list[StoreApi],
) -> None:
    """The counter rows follow every ledger row, not only reservations: a release gives room back,
    a charge keeps it taken."""
    await stores[0].batches.insert_batch(batch_row(budget=2.0), make_jobs(4))
    first, second, third, fourth = (job.id for job in await stores[0].jobs.jobs_for_batch("b1"))
    day = ledger_day(time.time())

    async def reserve(store: StoreApi, job_id: int) -> CapReached | None:
        return await store.ledger.reserve_under_caps(
            job_id, "b1", "local", 1.0, budget=2.0, daily_cap=None, day=day
        )

    assert await reserve(stores[0], first) is None
    assert await reserve(stores[1], second) is None
    assert await reserve(stores[2], third) is not None  # full
    await stores[3].ledger.release(first)
    assert await reserve(stores[2], third) is None  # the release made room
    assert await stores[0].ledger.settle_finished(second, 1.0, {"url": "u"}) == 1.0
    assert await reserve(stores[1], fourth) is not None  # the charge still counts
    assert await stores[0].ledger.batch_exposure("b1") == 2.0


async def test_a_charge_is_settled_once_when_two_daemons_settle_it_at_once(stores: list[StoreApi]) -> None:
    await stores[0].batches.insert_batch(batch_row(), make_jobs(1))
    (job,) = await stores[0].jobs.jobs_for_batch("b1")
    await stores[0].ledger.reserve(job.id, "b1", "local", 2.0)
    settled = await asyncio.gather(
        *(store.ledger.settle_finished(job.id, 1.5, {"url": "u"}) for store in stores)
    )
    assert sorted(settled, key=lambda x: x is None) == [1.5, None, None, None]
    assert await stores[1].ledger.charged(batch_id="b1") == 1.5
    assert await stores[2].ledger.batch_exposure("b1") == 1.5


async def test_the_same_file_dropped_on_two_daemons_at_once_is_one_batch(
    pg_database: str, tmp_path: Path
) -> None:
    """Two daemons (two HOMEs, one database) accept the same content at the same moment."""
    raw = b"a red fox\na blue jay\na green frog\n"
    homes = [tmp_path / "home-a", tmp_path / "home-b"]
    stores: list[StoreApi] = []
    try:
        controls = []
        for home in homes:
            home.mkdir()
            layout = HomeLayout(home)
            layout.ensure()
            store = await open_store(pg_database, layout.db)
            stores.append(store)
            controls.append(Control(Engine(store, load_settings(home, provider="local"), layout)))
        outcomes = await asyncio.gather(*(c.accept(raw, "same.txt") for c in controls for _ in range(3)))
        accepted = [o for o in outcomes if isinstance(o, Accepted)]
        duplicates = [o for o in outcomes if isinstance(o, Duplicate)]
        assert len(accepted) == 1 and len(duplicates) == 5, outcomes
        assert accepted[0].batch is not None
        assert {d.of.id for d in duplicates} == {accepted[0].batch.id}
        for store in stores:
            assert (await store.counters.counts())["queued"] == 3
            assert len(await store.batches.list_batches()) == 1
    finally:
        for store in stores:
            await store.close()


async def _set_version(url: str, version: int) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("UPDATE schema_version SET version = %s", (version,))


async def test_an_empty_database_is_given_the_schema_at_first_open(pg_database: str, tmp_path: Path) -> None:
    from wfbatch.store import schema_versions

    assert await schema_versions(pg_database, tmp_path / "x.db") == (None, SCHEMA_VERSION)
    store = await open_store(pg_database, tmp_path / "x.db")
    await store.close()
    assert await schema_versions(pg_database, tmp_path / "x.db") == (SCHEMA_VERSION, SCHEMA_VERSION)


async def test_a_schema_newer_than_the_code_is_refused_naming_both_versions(
    pg_database: str, tmp_path: Path
) -> None:
    await (await open_store(pg_database, tmp_path / "x.db")).close()
    await _set_version(pg_database, SCHEMA_VERSION + 1)
    with pytest.raises(SchemaTooNew, match=rf"version {SCHEMA_VERSION + 1}.*up to {SCHEMA_VERSION}"):
        await open_store(pg_database, tmp_path / "x.db", migrate=True)


async def test_an_older_schema_waits_for_db_migrate(pg_database: str, tmp_path: Path) -> None:
    """The daemon refuses an older schema (other daemons of the older wfbatch may use it); the
    migration, asked for, takes the missing steps only."""
    import psycopg

    await (await open_store(pg_database, tmp_path / "x.db")).close()
    # Back to version 13: migration 14 (the cap counter rows) undone by hand,
    async with await psycopg.AsyncConnection.connect(pg_database, autocommit=True) as conn:
        await conn.execute("DROP TRIGGER cap_exposure_book ON ledger")
        await conn.execute("DROP FUNCTION cap_exposure_book()")
        await conn.execute("DROP TABLE cap_exposure")
        # and migration 15 (the daemons' leases and the jobs' owner stamp)
        await conn.execute("DROP TRIGGER jobs_notify_queued ON jobs")
        await conn.execute("DROP FUNCTION jobs_notify_queued()")
        await conn.execute("DROP TABLE daemons, account_leases")
        await conn.execute("ALTER TABLE jobs DROP COLUMN owner, DROP COLUMN owner_epoch")
        await conn.execute("DROP INDEX ledger_job")
    await _set_version(pg_database, 13)
    with pytest.raises(SchemaTooOld, match=rf"version 13; this wfbatch needs {SCHEMA_VERSION}.*db migrate"):
        await open_store(pg_database, tmp_path / "x.db")
    store = await open_store(pg_database, tmp_path / "x.db", migrate=True)
    try:
        await store.batches.insert_batch(batch_row(budget=1.0), make_jobs(2))
        first, second = await store.jobs.jobs_for_batch("b1")
        day = ledger_day(time.time())
        for job, refused in ((first, False), (second, True)):
            reached = await store.ledger.reserve_under_caps(
                job.id, "b1", "local", 1.0, budget=1.0, daily_cap=None, day=day
            )
            assert (reached is not None) is refused
    finally:
        await store.close()


async def test_a_dedicated_connection_holds_a_session_lock_until_it_is_let_go(
    stores: list[StoreApi],
) -> None:
    """What account leases will build on: a connection outside the pool, whose session-level
    advisory lock no other daemon can take while it lives."""
    from wfbatch.store.pg.store import PostgresStore

    first, second = stores[0], stores[1]
    assert isinstance(first, PostgresStore) and isinstance(second, PostgresStore)
    take = "SELECT pg_try_advisory_lock(42)"
    async with first.db.dedicated() as holder:
        assert (await (await holder.execute(take)).fetchone()) == (True,)
        async with second.db.dedicated() as other:
            assert (await (await other.execute(take)).fetchone()) == (False,)
    async with second.db.dedicated() as other:
        assert (await (await other.execute(take)).fetchone()) == (True,)


async def test_two_engines_on_one_database_spend_exactly_a_budget_of_30_on_40_prompts(
    pg_database: str, tmp_path: Path
) -> None:
    """Two daemons' engines (two HOMEs, two stores, one database) run one batch with a budget of 30
    one-credit prompts out of 40 at the same time: 30 executions, 30 credits, never more."""
    from tests.conftest_sim import fast_options
    from tests.engine_sim import enqueue, prompts, run_engine, wireflow_engine_settings
    from wfbatch.sim import RunningSimulator

    raw = prompts(40)
    stores: list[StoreApi] = []
    try:
        with RunningSimulator(fast_options(cost=1)) as sim:
            runs = []
            batch_id = ""
            for name in ("a", "b"):
                home = tmp_path / f"home-{name}"
                home.mkdir()
                layout = HomeLayout(home)
                layout.ensure()
                store = await open_store(pg_database, layout.db)
                stores.append(store)
                if not batch_id:
                    batch = (await enqueue(store, layout, raw, "capped.jsonl")).batch
                    batch_id = batch.id
                    assert await store.batches.set_batch_budget(batch_id, 30.0)
                runs.append(run_engine(store, wireflow_engine_settings(home, sim), layout, [batch_id]))
            await asyncio.gather(*runs)
            stats = sim.state.stats()
        assert stats["executions_created"] == 30
        assert stats["credits"]["charged"] == 30
        for store in stores:
            assert await store.ledger.charged(batch_id=batch_id) == 30
            assert await store.ledger.batch_exposure(batch_id) == 30
            counts = await store.counters.counts([batch_id])
            assert (counts["done"], counts["queued"]) == (30, 10)
    finally:
        for store in stores:
            await store.close()
