"""Never pay twice, never exceed a budget: the attacks that broke these promises, rerun against the
real engine, a real SQLite file and the Wireflow simulator over loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.conftest_sim import fast_options
from tests.deadlines import patience
from tests.engine_sim import enqueue, prompts, run_engine, wireflow_engine_settings
from wfbatch.core.parsing import parse_prompt_bytes
from wfbatch.core.states import Execution, JobState
from wfbatch.engine.clock import SystemClock
from wfbatch.engine.intake.control import Accepted, Control, Duplicate
from wfbatch.engine.intake.ingest import Ingested, ingest
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.engine.loop.storage import BACKOFF_MIN as PROBE_BACKOFF_MIN
from wfbatch.home import HomeLayout
from wfbatch.outputs import read_manifest, write_manifest
from wfbatch.settings import load_settings
from wfbatch.sim import RunningSimulator
from wfbatch.store import Reuse, Store, StoreApi

WAIT = patience(15.0)
JOBS_ON_A_FULL_DISK = 80
"""Enough that the rows they add outgrow the free room left in the tables' pages."""


async def _until(predicate: Callable[[], Awaitable[bool]], what: str, within: float = WAIT) -> None:
    """Poll an async predicate until it holds (bounded)."""
    deadline = asyncio.get_running_loop().time() + within
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_two_identical_submits_at_once_make_one_batch(
    any_store: StoreApi, layout: HomeLayout, home: Path
) -> None:
    settings = load_settings(home, provider="local")
    control = Control(Engine(any_store, settings, layout))
    raw = b"a red fox\na blue jay\n"
    outcomes = await asyncio.gather(*(control.accept(raw, "same.txt") for _ in range(6)))
    accepted = [o for o in outcomes if isinstance(o, Accepted)]
    duplicates = [o for o in outcomes if isinstance(o, Duplicate)]
    assert len(accepted) == 1 and len(duplicates) == 5
    assert accepted[0].batch is not None
    assert {d.of.id for d in duplicates} == {accepted[0].batch.id}
    assert (await any_store.counters.counts())["queued"] == 2  # not 12
    # The losers claimed no output folder that stays behind.
    assert len(list(layout.output.iterdir())) == 1


async def test_the_same_bytes_read_as_another_format_are_another_batch(
    any_store: StoreApi, layout: HomeLayout, home: Path
) -> None:
    control = Control(Engine(any_store, load_settings(home, provider="local"), layout))
    raw = b"prompt\na red fox\n"
    as_txt, as_csv = await asyncio.gather(control.accept(raw, "x.txt"), control.accept(raw, "x.csv"))
    assert isinstance(as_txt, Accepted) and isinstance(as_csv, Accepted)
    assert (await any_store.counters.counts())["queued"] == 3  # two txt lines, one csv row


async def test_retry_after_lost_start_answers_pays_once_per_job(
    any_store: StoreApi, layout: HomeLayout, home: Path
) -> None:
    """The execution was created but its answer was lost, and the job gave up: a retry by hand
    re-sends the same key (the provider replays it), it does not create a second execution."""
    with RunningSimulator(fast_options(cost=1)) as sim:
        # Each job's start and its replay (the one try a maybe-execution gets again) lose their answers.
        sim.state.queue_fault("lost_5xx", route="execute", count=4)
        batch = (await enqueue(any_store, layout, prompts(2))).batch
        settings = wireflow_engine_settings(home, sim, max_attempts=1, max_in_flight=1)
        reason, _ = await run_engine(any_store, settings, layout, [batch.id])
        assert (await any_store.counters.counts([batch.id]))["failed"] == 2, reason
        assert sim.state.stats()["executions_created"] == 2
        failed = await any_store.jobs.job_ids(states=[JobState.FAILED])
        assert await any_store.jobs.requeue_for_retry(failed) == failed
        reason, _ = await run_engine(any_store, settings, layout, [batch.id])
        stats = sim.state.stats()
    assert reason.code == "done"
    assert stats["executions_created"] == 2  # one paid execution per job, not 4
    assert set(stats["executions_by_key"].values()) == {1}
    assert await any_store.ledger.charged(batch_id=batch.id) == stats["credits"]["charged"] == 2


async def test_cancel_retry_and_restart_never_charge_more_than_the_budget(
    any_store: StoreApi, layout: HomeLayout, home: Path
) -> None:
    spec = {
        "name": "capped",
        "budget": 2,
        "defaults": {"width": 64, "height": 64},
        "prompts": ["a", "b", "c", "d"],
    }
    raw = json.dumps(spec).encode()
    with RunningSimulator(fast_options(cost=1, latency=(0.6, 0.8))) as sim:
        settings = wireflow_engine_settings(home, sim)
        batch = (await enqueue(any_store, layout, raw, "capped.json")).batch
        engine = Engine(any_store, settings, layout)
        control = Control(engine)
        stop = asyncio.Event()
        running = asyncio.create_task(engine.run_forever(stop))

        async def two_running() -> bool:
            return len(await any_store.jobs.job_ids(states=[JobState.RUNNING])) == 2

        await _until(two_running, "two running executions")
        live = await any_store.jobs.job_ids(states=[JobState.RUNNING])
        await control.cancel(live)
        # Canceled, but their executions may still charge: they stay reserved, the cap holds.
        assert await any_store.ledger.batch_exposure(batch.id) == 2
        await control.retry(live)
        stop.set()
        await running
        await engine.shutdown()
        # A restart: nothing canceled or retried is forgotten by the ledger.
        reason, _ = await run_engine(any_store, settings, layout, [batch.id])
        stats = sim.state.stats()
    assert stats["executions_created"] == 2
    assert stats["credits"]["charged"] == 2
    assert await any_store.ledger.charged(batch_id=batch.id) == 2  # reported == charged
    counts = await any_store.counters.counts([batch.id])
    assert counts["done"] == 2 and counts["queued"] == 2
    assert reason.code == "paused" and "budget reached" in reason.message


async def test_a_canceled_execution_that_finishes_is_charged_and_retried_for_free(
    any_store: StoreApi, layout: HomeLayout, home: Path
) -> None:
    with RunningSimulator(fast_options(cost=1, latency=(0.3, 0.4))) as sim:
        settings = wireflow_engine_settings(home, sim)
        batch = (await enqueue(any_store, layout, prompts(1))).batch
        engine = Engine(any_store, settings, layout)
        stop = asyncio.Event()
        running = asyncio.create_task(engine.run_forever(stop))

        async def started() -> bool:
            return bool(await any_store.jobs.job_ids(states=[JobState.RUNNING]))

        await _until(started, "a running execution")
        (job_id,) = await any_store.jobs.job_ids(states=[JobState.RUNNING])
        await Control(engine).cancel([job_id])
        canceled = await any_store.jobs.get_job(job_id)
        assert canceled is not None and canceled.remote_id is not None
        remote_id = canceled.remote_id

        async def finished_at_the_provider() -> bool:
            sim.state.book.settle()  # the simulator moves executions on when asked
            execution = sim.state.book.execution(remote_id)
            return execution is not None and execution.status != "RUNNING"

        await _until(finished_at_the_provider, "the canceled execution to finish at the provider")
        assert await engine.settle_canceled_executions() == 1
        job = await any_store.jobs.get_job(job_id)
        assert job is not None and job.state is JobState.CANCELED and job.execution is Execution.FINISHED
        assert await any_store.ledger.charged(batch_id=batch.id) == 1  # what the provider charged
        await Control(engine).retry([job_id])

        async def done() -> bool:
            return (await any_store.counters.counts([batch.id]))["done"] == 1

        await _until(done, "the retried job to be done")
        stop.set()
        await running
        await engine.shutdown()
        stats = sim.state.stats()
    assert stats["executions_created"] == 1 and stats["credits"]["charged"] == 1
    assert await any_store.ledger.charged(batch_id=batch.id) == 1


async def test_paid_jobs_are_never_held_by_their_own_budget(
    any_store: StoreApi, layout: HomeLayout, home: Path
) -> None:
    """Two executions finish and are paid, their downloads fail once; the budget is reached (a third
    job is held): the paid images are still fetched."""
    spec = {"name": "b", "budget": 2, "defaults": {"width": 64, "height": 64}, "prompts": ["a", "b", "c"]}
    raw = json.dumps(spec).encode()
    with RunningSimulator(fast_options(cost=1, cdn_error_rate=0.5, seed=3)) as sim:
        settings = wireflow_engine_settings(home, sim, max_in_flight=2, max_attempts=20)
        batch = (await enqueue(any_store, layout, raw, "b.json")).batch
        reason, _ = await run_engine(any_store, settings, layout, [batch.id])
        stats = sim.state.stats()
    assert stats["faults_injected"].get("cdn_503", 0) + stats["faults_injected"].get("cdn_empty", 0) + stats[
        "faults_injected"
    ].get("cdn_html", 0) >= 1, stats
    counts = await any_store.counters.counts([batch.id])
    assert counts["done"] == 2 and counts["queued"] == 1, (counts, reason)
    assert stats["credits"]["charged"] == 2


async def test_a_full_disk_holds_the_engine_once_and_it_recovers_by_itself(
    store: Store, layout: HomeLayout, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wfbatch")
    settings = load_settings(home, provider="local", local={"max_in_flight": 4})
    batch = (await enqueue_local(store, layout, JOBS_ON_A_FULL_DISK)).batch
    await fill_the_database(store)
    clock = SleepsSeen()
    engine = Engine(store, settings, layout, clock=clock)
    stop = asyncio.Event()
    running = asyncio.create_task(engine.run_forever(stop))

    async def held() -> bool:
        return engine.storage.problem is not None

    await _until(held, "the disk-full hold")
    assert engine.holds.everything() is not None and "disk full" in engine.holds.everything()

    async def probed_in_vain() -> bool:  # the backoff doubled: a probe found the disk still full
        return PROBE_BACKOFF_MIN * 2 in clock.sleeps

    await _until(probed_in_vain, "a probe of the still-full disk")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]  # said once, no traceback storm
    async with store.transaction() as conn:  # space freed (the limit is the writer connection's)
        await conn.execute("PRAGMA max_page_count = 1073741823")

    async def all_done() -> bool:
        return (await store.counters.counts([batch.id]))["done"] == JOBS_ON_A_FULL_DISK

    await _until(all_done, "every job done after space came back", within=patience(40))
    assert engine.storage.problem is None
    stop.set()
    await running
    await engine.shutdown()
    counts = await store.counters.counts([batch.id])
    assert counts["failed"] == 0 and counts["submitting"] == 0 and counts["running"] == 0


async def test_a_stale_manifest_is_rewritten_at_start(
    any_store: StoreApi, layout: HomeLayout, home: Path
) -> None:
    """What a kill -9 between a job's last change and the manifest refresh leaves: a manifest that
    lags the database. The next start rewrites it (and the contact sheet) without any new work."""
    settings = load_settings(home, provider="local")
    batch = (await enqueue_local(any_store, layout, 3)).batch
    reason, _ = await run_engine(any_store, settings, layout, [batch.id])
    assert reason.code == "done"
    folder = Path(batch.output_dir)
    lagging = read_manifest(folder).model_copy(update={"entries": [], "counts": {"done": 0}})
    write_manifest(folder, lagging)
    old = (await any_store.jobs.jobs_for_batch(batch.id))[0].updated_at - 60
    os.utime(folder / "manifest.json", (old, old))
    (folder / "contact-sheet.png").unlink()
    engine = Engine(any_store, settings, layout)
    stop = asyncio.Event()
    running = asyncio.create_task(engine.run_forever(stop))

    async def caught_up() -> bool:
        return (folder / "contact-sheet.png").exists() and read_manifest(folder).counts.get("done") == 3

    await _until(caught_up, "the manifest to catch up")
    stop.set()
    await running
    await engine.shutdown()


async def enqueue_local(store: StoreApi, layout: HomeLayout, count: int) -> Ingested:
    raw = prompts(count, "disk")
    return await ingest(store, layout, parse_prompt_bytes(raw, "disk.jsonl"), raw, "local", reuse=Reuse.NEVER)


async def fill_the_database(store: Store) -> None:
    """A real SQLITE_FULL: cap the file at its size (SQLite's max_page_count, a setting of the
    store's writer connection), then fill every page, one transaction an insert."""
    async with store.transaction() as conn:
        pages = (await conn.execute_fetchall("PRAGMA page_count"))[0][0]
        await conn.execute(f"PRAGMA max_page_count = {pages + 2}")
        await conn.execute("CREATE TABLE filler (data BLOB)")
    for size in (4096, 512, 64, 8, 1):
        for _ in range(10_000):
            try:
                async with store.transaction() as conn:
                    await conn.execute("INSERT INTO filler VALUES (zeroblob(?))", (size,))
            except sqlite3.OperationalError:
                break


class SleepsSeen(SystemClock):
    """The system's clock, remembering every sleep asked of it: a sentinel for "the engine has
    gone round its loop", in place of a sleep of the test's own."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await super().sleep(seconds)


async def test_a_wrong_key_pauses_the_provider_and_keeps_every_job_queued(
    any_store: StoreApi, layout: HomeLayout, home: Path
) -> None:
    with RunningSimulator(fast_options(api_key="sk-the-right-one")) as sim:
        batch = (await enqueue(any_store, layout, prompts(20))).batch
        reason, _ = await run_engine(any_store, wireflow_engine_settings(home, sim), layout, [batch.id])
        requests = sim.state.stats()["requests"]["total"]
    assert reason.code == "paused" and "authentication failed" in reason.message, reason
    assert "WFBATCH_WIREFLOW__API_KEY" in reason.message
    assert (await any_store.counters.counts([batch.id]))["queued"] == 20
    assert requests <= 3, requests


async def test_a_dead_endpoint_pauses_in_seconds_and_keeps_every_job_queued(
    any_store: StoreApi, layout: HomeLayout, home: Path
) -> None:
    with RunningSimulator(fast_options()) as sim:
        dead = sim.base_url
    batch = (await enqueue(any_store, layout, prompts(5))).batch
    settings = wireflow_engine_settings(home, RunningSimulatorAddress(dead), max_attempts=10)
    reason, _ = await asyncio.wait_for(run_engine(any_store, settings, layout, [batch.id]), 30)
    assert reason.code == "paused" and "unreachable" in reason.message.lower(), reason
    counts = await any_store.counters.counts([batch.id])
    assert counts["queued"] == 5 and counts["failed"] == 0, counts


class RunningSimulatorAddress:
    """Where a simulator listened: enough for the settings of a client pointed at a dead port."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
