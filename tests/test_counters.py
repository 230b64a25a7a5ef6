"""The counters `status`, the TUI header and the metrics read (schema 7: job_counts, charge_totals,
wait_totals): kept by triggers in the transaction of every change, so they always equal what they
count; checked against COUNT(*)/SUM on start and rebuilt (and logged) when they do not."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path

import pytest

from tests.daemon_harness import jsonl, running_daemon
from tests.test_store import make_batch, make_jobs
from wfbatch.core.states import JobState
from wfbatch.store import Store
from wfbatch.store.bulk import BULK_MIN_JOBS, COUNTS_TRIGGER, WAITS_TRIGGER
from wfbatch.store.schema import MIGRATIONS

COUNTED = "SELECT batch_id, provider, state, COUNT(*) FROM jobs GROUP BY batch_id, provider, state"
KEPT = "SELECT batch_id, provider, state, n FROM job_counts WHERE n <> 0"


def counters_and_counts(db: Path) -> tuple[dict[tuple[str, ...], object], dict[tuple[str, ...], object]]:
    """(what the counters say, what the tables say), read in one snapshot of the file."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("BEGIN")
        kept: dict[tuple[str, ...], object] = {tuple(r[:3]): r[3] for r in conn.execute(KEPT)}
        counted: dict[tuple[str, ...], object] = {tuple(r[:3]): r[3] for r in conn.execute(COUNTED)}
        charges = conn.execute("SELECT batch_id, provider, credits FROM charge_totals WHERE credits <> 0")
        kept.update({("charge", r[0], r[1]): round(r[2], 6) for r in charges})
        summed = conn.execute(
            "SELECT batch_id, provider, SUM(credits) FROM ledger WHERE kind = 'charge' GROUP BY 1, 2"
        )
        counted.update({("charge", r[0], r[1]): round(r[2], 6) for r in summed})
        started, seconds = conn.execute("SELECT started, seconds FROM wait_totals").fetchone()
        kept[("waits",)] = (started, round(seconds, 3))
        n, s = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(started_at - created_at), 0) FROM jobs"
            " WHERE started_at IS NOT NULL"
        ).fetchone()
        counted[("waits",)] = (n, round(s, 3))
        conn.execute("COMMIT")
    finally:
        conn.close()
    return kept, counted


async def test_every_store_write_path_keeps_the_counters_equal_to_count(store: Store) -> None:
    await store.batches.insert_batch(make_batch("b1", "h1"), make_jobs(6, "a"))
    await store.batches.insert_batch(make_batch("b2", "h2"), make_jobs(3, "b"))
    ids = await store.jobs.job_ids(states=[JobState.QUEUED], batch_id="b1")
    # The jobs' own enqueue time, not the clock's: the waits below are then exact, however long a
    # loaded machine took between the insert and here.
    first = await store.jobs.get_job(ids[0])
    assert first is not None
    now = first.created_at
    assert await store.jobs.transition(ids[0], [JobState.QUEUED], JobState.SUBMITTING, started_at=now + 2)
    assert await store.jobs.transition(ids[0], [JobState.SUBMITTING], JobState.RUNNING)
    assert await store.jobs.transition(ids[0], [JobState.RUNNING], JobState.DONE, finished_at=now)
    assert await store.jobs.transition(ids[1], [JobState.QUEUED], JobState.SUBMITTING, started_at=now + 1)
    assert await store.jobs.transition(ids[1], [JobState.SUBMITTING], JobState.FAILED)
    assert await store.jobs.cancel_jobs(ids[2:4]) == ids[2:4]
    assert await store.jobs.requeue_for_retry([ids[1], ids[2]]) == [ids[1], ids[2]]
    assert await store.jobs.transition(ids[4], [JobState.QUEUED], JobState.RETRYING, next_attempt_at=now - 1)
    assert await store.jobs.promote_due_retries(now) == 1
    ledger = store.ledger
    await ledger.reserve(ids[5], "b1", "local", 2.0)
    assert await ledger.settle_finished(ids[5], 1.5, None) == 1.5
    async with store.transaction() as conn:  # a hand-written write no store method knows of
        await conn.execute(
            "UPDATE jobs SET state = 'done', started_at = 5, created_at = 1 WHERE batch_id = 'b2'"
        )
        await conn.execute("DELETE FROM jobs WHERE id = ?", (ids[3],))

    kept, counted = counters_and_counts(store.path)
    assert kept == counted
    assert (await store.counters.counts())["done"] == 4
    assert (await store.counters.counts_for_batches(["b1"]))["b1"]["queued"] == 4
    assert (await store.counters.counts_by("batch_id"))["b2"]["done"] == 3
    assert (await store.counters.credits_used_by("provider")) == {"local": 1.5}
    count, total, _ = await store.counters.queue_waits()
    assert count == 5 and total == pytest.approx(2 + 1 + 3 * 4)
    assert (await store.counters.check_counters()).rebuilt == ()


async def test_the_check_reads_aside_while_a_write_transaction_is_open(store: Store) -> None:
    """The start-up check runs beside the API and the engine: comparing counters that agree takes
    neither the store's write lock nor its shared connection, and sees committed rows only."""
    await store.batches.insert_batch(make_batch("b1", "h1"), make_jobs(4, "a"))
    async with store.transaction() as conn:
        await conn.execute("UPDATE jobs SET state = 'failed' WHERE idx = 1")  # not committed yet
        # Bounded: with the check inside the write lock this waited for itself, forever.
        check = await asyncio.wait_for(store.counters.check_counters(), timeout=60)
    assert check.rebuilt == ()
    assert (await store.counters.counts())["failed"] == 1


async def test_counters_that_disagree_are_rebuilt_on_check_and_logged(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    await store.batches.insert_batch(make_batch("b1", "h1"), make_jobs(4, "a"))
    async with store.transaction() as conn:  # damage: what a file edited by hand could hold
        await conn.execute("UPDATE job_counts SET n = 99")
        await conn.execute("INSERT INTO charge_totals VALUES ('b1', 'local', 7.0)")
        await conn.execute("UPDATE wait_totals SET started = 3")
    assert (await store.counters.counts())["queued"] == 99
    with caplog.at_level(logging.WARNING, logger="wfbatch.store"):
        check = await store.counters.check_counters()
    assert set(check.rebuilt) == {"job_counts", "charge_totals", "wait_totals"}
    assert "job_counts counters disagreed" in caplog.text
    kept, counted = counters_and_counts(store.path)
    assert kept == counted
    assert (await store.counters.counts())["queued"] == 4
    assert (await store.counters.check_counters()).rebuilt == ()


async def test_a_database_of_schema_6_gets_counters_of_its_existing_jobs(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db, isolation_level=None)
    for script in MIGRATIONS[:6]:
        conn.executescript(script)
    conn.execute("PRAGMA user_version=6")
    conn.execute(
        "INSERT INTO batches (id, name, source_name, content_hash, provider, cache_enabled, output_dir,"
        " created_at) VALUES ('b', 'n', 'n.txt', 'h', 'local', 1, '/tmp', 0)"
    )
    for i, state in enumerate(["done", "done", "failed", "queued"]):
        conn.execute(
            "INSERT INTO jobs (uid, batch_id, idx, line, provider, spec, prompt, cache_key, state,"
            " created_at, updated_at, started_at) VALUES (?, 'b', ?, ?, 'local', '{}', 'p', 'k', ?, 1, 1, ?)",
            (f"u{i}", i, i, state, 3 if state != "queued" else None),
        )
    conn.close()
    store = await Store.open(db)
    try:
        assert (await store.counters.counts())["done"] == 2
        assert (await store.counters.queue_waits())[:2] == (3, 6.0)
    finally:
        await store.close()
    kept, counted = counters_and_counts(db)
    assert kept == counted


def test_counters_equal_count_after_a_kill_9_storm() -> None:
    """A real daemon killed with -9 several times while a batch runs: every committed change moved
    its counter in the same transaction, so what survives agrees with COUNT(*)."""
    env = {
        "WFBATCH_LOCAL__LATENCY_MIN": "0.05",
        "WFBATCH_LOCAL__LATENCY_MAX": "0.3",
        "WFBATCH_LOCAL__MAX_IN_FLIGHT": "6",
    }
    total = 30
    with running_daemon(env=env) as daemon:
        daemon.drop("storm.jsonl", jsonl(*(f"storm {i}" for i in range(total))))
        done_before = -1
        for _ in range(3):
            daemon.wait_for_jobs(
                lambda jobs, floor=done_before: jobs["done"] > floor and jobs["done"] < total, timeout=15
            )
            done_before = daemon.status()["jobs"]["done"]
            daemon.kill()
            kept, counted = counters_and_counts(daemon.home / "wfbatch.db")
            assert kept == counted
            daemon.start()
        jobs = daemon.wait_for_jobs(lambda jobs: jobs["done"] == total, timeout=20)
        assert sum(jobs.values()) == total
        assert "counters disagreed" not in daemon.log()
        daemon.stop()
        kept, counted = counters_and_counts(daemon.home / "wfbatch.db")
        assert kept == counted


def _triggers(db: Path) -> dict[str, str]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
    finally:
        conn.close()
    return {str(name): str(sql) for name, sql in rows}


async def test_a_large_batch_counted_once_keeps_the_counters_and_the_triggers(store: Store) -> None:
    """A batch of BULK_MIN_JOBS jobs or more is counted by one aggregate, its insert triggers off
    for that one statement: the counters still equal COUNT(*), the triggers are back (same text)
    and still count the next small insert, a hand-written insert of a started job and every
    transition."""
    before = _triggers(store.path)
    assert {COUNTS_TRIGGER, WAITS_TRIGGER} <= set(before)
    await store.batches.insert_batch(make_batch("small", "h0"), make_jobs(3, "s"))
    await store.batches.insert_batch(make_batch("big", "h1"), make_jobs(BULK_MIN_JOBS + 7, "a"))
    await store.batches.insert_batch(make_batch("big2", "h2"), make_jobs(BULK_MIN_JOBS, "b"))
    assert _triggers(store.path) == before
    await store.batches.insert_batch(make_batch("after", "h3"), make_jobs(2, "c"))
    ids = await store.jobs.job_ids(states=[JobState.QUEUED], batch_id="big")
    assert await store.jobs.transition(ids[0], [JobState.QUEUED], JobState.SUBMITTING, started_at=time.time())
    async with store.transaction() as conn:
        await conn.execute(
            "INSERT INTO jobs (uid, batch_id, idx, line, provider, spec, prompt, cache_key, state,"
            " created_at, updated_at, started_at) SELECT 'hand', batch_id, 99, 99, provider, spec, prompt,"
            " cache_key, 'running', 1, 1, 4 FROM jobs WHERE id = ?",
            (ids[1],),
        )

    kept, counted = counters_and_counts(store.path)
    assert kept == counted
    assert kept[("waits",)][0] == 2  # type: ignore[index]
    assert (await store.counters.counts_for_batches(["big"]))["big"]["queued"] == BULK_MIN_JOBS + 6
    assert (await store.counters.counts())["queued"] == 3 + BULK_MIN_JOBS + 6 + BULK_MIN_JOBS + 2
    assert (await store.counters.check_counters()).rebuilt == ()


async def test_a_large_batch_that_fails_leaves_the_triggers_and_the_counters(store: Store) -> None:
    """A bulk insert that fails (a duplicate uid at its very end) rolls back the dropped triggers
    with everything else: nothing inserted, nothing counted, the triggers still counting."""
    before = _triggers(store.path)
    jobs = make_jobs(BULK_MIN_JOBS, "a")
    with pytest.raises(sqlite3.IntegrityError):
        await store.batches.insert_batch(make_batch("big", "h1"), [*jobs, jobs[0]])
    assert _triggers(store.path) == before
    assert (await store.counters.counts())["queued"] == 0
    await store.batches.insert_batch(make_batch("small", "h2"), make_jobs(2, "s"))
    kept, counted = counters_and_counts(store.path)
    assert kept == counted == {("small", "local", "queued"): 2, ("waits",): (0, 0)}


async def test_an_insert_trigger_the_bulk_path_does_not_know_fires_for_every_row(store: Store) -> None:
    """A later INSERT trigger on jobs (one the bulk path cannot stand in for) turns the bulk path
    off: every row is inserted with every trigger firing."""
    async with store.transaction() as conn:
        await conn.execute("CREATE TABLE seen (n INTEGER NOT NULL)")
        await conn.execute("INSERT INTO seen VALUES (0)")
        await conn.execute(
            "CREATE TRIGGER jobs_seen AFTER INSERT ON jobs BEGIN UPDATE seen SET n = n + 1; END"
        )
    await store.batches.insert_batch(make_batch("big", "h1"), make_jobs(BULK_MIN_JOBS, "a"))
    assert (await store.fetchone("SELECT n FROM seen"))["n"] == BULK_MIN_JOBS  # type: ignore[index]
    kept, counted = counters_and_counts(store.path)
    assert kept == counted


async def test_start_up_reads_fall_back_to_the_shared_connection_when_none_can_be_opened(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Out of descriptors at start (a flood of API connections): the aside connection cannot open.
    # The daemon used to stop with "unable to open database file" (seen in CI); it reads on.
    await store.batches.insert_batch(make_batch(), make_jobs(3))

    async def cannot_open(*_: object) -> list[list[sqlite3.Row]]:
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr("wfbatch.store.db.read_aside", cannot_open)
    assert await store.counters.check_counters() is not None
    assert list(await store.jobs.recently_changed_batches(0.0)) == ["b1"]
