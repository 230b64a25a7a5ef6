"""The engine with the real Wireflow provider against the simulator over loopback."""

from __future__ import annotations

from pathlib import Path

from tests.conftest_sim import fast_options, job_spec
from tests.engine_sim import enqueue, prompts, run_engine, wireflow_engine_settings
from wfbatch.core.states import JobState
from wfbatch.home import HomeLayout
from wfbatch.outputs import read_manifest
from wfbatch.providers.base import UnlimitedGate
from wfbatch.providers.wireflow.client import WireflowProvider
from wfbatch.sim import RunningSimulator
from wfbatch.store import Store


async def test_happy_path_one_execution_per_job(store: Store, layout: HomeLayout, home: Path) -> None:
    with RunningSimulator(fast_options()) as sim:
        batch = (await enqueue(store, layout, prompts(8))).batch
        reason, engine = await run_engine(store, wireflow_engine_settings(home, sim), layout, [batch.id])
        stats = sim.state.stats()
    assert reason.code == "done"
    assert (await store.counters.counts([batch.id]))["done"] == 8
    assert stats["executions_created"] == 8
    assert set(stats["executions_by_key"].values()) == {1}
    manifest = read_manifest(Path(batch.output_dir))
    assert all(e.remote_id and e.request_id for e in manifest.entries)
    assert engine.pool.limiters["wireflow"].sent_by_kind["start"] == 8


async def test_a_429_slows_the_whole_provider_and_costs_no_attempts(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    # Another client on the same account has just used this window's 3 starts: our first start
    # meets a 429 although our own counting is right.
    with RunningSimulator(fast_options(epm=3, window=2.0)) as sim:
        settings = wireflow_engine_settings(
            home, sim, executions_per_minute=3, rate_window_seconds=2.0, max_attempts=1
        )
        other_client = WireflowProvider(settings.wireflow, UnlimitedGate())
        for i in range(3):
            await other_client.submit(job_spec(f"someone else {i}"), f"other-{i}")
        await other_client.aclose()
        batch = (await enqueue(store, layout, prompts(5))).batch
        reason, engine = await run_engine(store, settings, layout, [batch.id])
        stats = sim.state.stats()
    assert reason.code == "done"
    assert stats["rate_limited"] >= 1
    assert engine.pool.limiters["wireflow"].rate_limited >= 1
    jobs = await store.jobs.jobs_for_batch(batch.id)
    # max_attempts=1: had the 429 used up an attempt, the job would have failed.
    assert all(j.state is JobState.DONE for j in jobs)
    assert stats["executions_created"] == 3 + 5
    attempts = [a for j in jobs for a in await store.jobs.attempts_for(j.id)]
    assert any(a.outcome == "rate_limited" and a.http_status == 429 and a.request_id for a in attempts)


async def test_configured_limits_mean_no_429_at_all(store: Store, layout: HomeLayout, home: Path) -> None:
    with RunningSimulator(fast_options(epm=3, rpm=30, window=1.0)) as sim:
        batch = (await enqueue(store, layout, prompts(7))).batch
        settings = wireflow_engine_settings(
            home, sim, executions_per_minute=3, requests_per_minute=30, rate_window_seconds=1.0
        )
        reason, _ = await run_engine(store, settings, layout, [batch.id])
        stats = sim.state.stats()
    assert reason.code == "done"
    assert stats["rate_limited"] == 0


async def test_out_of_credits_pauses_then_a_top_up_finishes_without_repeats(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with RunningSimulator(fast_options(credits=3, cost=1)) as sim:
        batch = (await enqueue(store, layout, prompts(6))).batch
        settings = wireflow_engine_settings(home, sim, max_in_flight=2)
        reason, _ = await run_engine(store, settings, layout, [batch.id])
        assert reason.code == "paused"
        assert "out of credits" in reason.message and "available" in reason.message
        wireflow = reason.details["providers"]["wireflow"]
        assert wireflow["required"] == 1 and wireflow["available"] == 0
        counts = await store.counters.counts([batch.id])
        assert counts["done"] == 3 and counts["queued"] == 3 and counts["failed"] == 0
        sim.state.top_up(10)
        reason, _ = await run_engine(store, settings, layout, [batch.id])
        stats = sim.state.stats()
    assert reason.code == "done"
    assert (await store.counters.counts([batch.id]))["done"] == 6
    assert stats["executions_created"] == 6
    assert set(stats["executions_by_key"].values()) == {1}
    # The 402s sent jobs back to the queue cleanly: no attempt used, no internal error recorded.
    for job in await store.jobs.jobs_for_batch(batch.id):
        assert job.attempts == 1
        outcomes = {a.outcome for a in await store.jobs.attempts_for(job.id)}
        assert "transient" not in outcomes


async def test_a_lost_answer_is_resent_with_the_same_key(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with RunningSimulator(fast_options()) as sim:
        sim.state.queue_fault("lost_5xx", route="execute", count=1)
        sim.state.queue_fault("lost_reset", route="execute", count=1)
        batch = (await enqueue(store, layout, prompts(3))).batch
        reason, _ = await run_engine(store, wireflow_engine_settings(home, sim), layout, [batch.id])
        stats = sim.state.stats()
    assert reason.code == "done"
    assert stats["executions_created"] == 3  # the two lost answers were replayed, not re-executed
    assert set(stats["executions_by_key"].values()) == {1}
    assert stats["replays"] >= 2


async def test_a_failed_execution_fails_the_job_with_message_and_request_id(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with RunningSimulator(fast_options(fail_marker="FORBIDDEN")) as sim:
        raw = prompts(2) + b'\n{"prompt": "FORBIDDEN thing", "width": 64, "height": 64}'
        batch = (await enqueue(store, layout, raw)).batch
        reason, _ = await run_engine(store, wireflow_engine_settings(home, sim), layout, [batch.id])
    assert reason.code == "done"
    failed = await store.jobs.list_jobs(states=[JobState.FAILED])
    assert len(failed) == 1
    assert failed[0].error_message and failed[0].error_request_id
    assert failed[0].attempts == 1  # permanent: no retry


async def test_an_execution_that_never_finishes_does_not_hold_its_slot_forever(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with RunningSimulator(fast_options(latency=(30.0, 30.0))) as sim:
        batch = (await enqueue(store, layout, prompts(1))).batch
        settings = wireflow_engine_settings(home, sim, max_run_seconds=0.5, max_attempts=2)
        reason, _ = await run_engine(store, settings, layout, [batch.id])
        stats = sim.state.stats()
    assert reason.code == "done"
    job = (await store.jobs.jobs_for_batch(batch.id))[0]
    assert job.state is JobState.FAILED
    assert job.error_message is not None and "still not finished" in job.error_message
    assert stats["executions_created"] == 1  # the retry polled the same execution, it did not pay again


async def test_malformed_bodies_and_5xx_are_retried(store: Store, layout: HomeLayout, home: Path) -> None:
    with RunningSimulator(fast_options()) as sim:
        sim.state.queue_fault("malformed", route="poll", count=2)
        sim.state.queue_fault("503", route="execute", count=2)
        batch = (await enqueue(store, layout, prompts(4))).batch
        reason, _ = await run_engine(store, wireflow_engine_settings(home, sim), layout, [batch.id])
        stats = sim.state.stats()
    assert reason.code == "done"
    assert (await store.counters.counts([batch.id]))["done"] == 4
    assert stats["executions_created"] == 4
