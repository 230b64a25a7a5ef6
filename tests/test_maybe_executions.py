"""An execution that may exist is never given up by attempt count alone: it is resolved (the
idempotency key replayed, the known execution polled), or the job fails saying a paid image may
exist, and its charge is booked once it is learnt. Real engine, real SQLite, the Wireflow
simulator over loopback with its fault injection."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.conftest_sim import fast_options
from tests.engine_sim import enqueue, prompts, run_engine, wireflow_engine_settings
from wfbatch.core.states import Execution, JobState
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.home import HomeLayout
from wfbatch.sim import RunningSimulator
from wfbatch.store import StoreApi

WAIT = 20.0
COST = 3.0


async def _until(predicate: Callable[[], Awaitable[bool]], what: str, within: float = WAIT) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def _storm(sim: RunningSimulator, resets: int) -> None:
    """The first start creates its execution and loses the answer (a reset); every start after it,
    `resets` of them, is reset before it reaches the provider's idempotency check."""
    sim.state.queue_fault("lost_reset", route="execute", count=1)
    sim.state.queue_fault("reset", route="execute", count=resets)


async def test_a_reset_storm_after_the_execution_was_created_still_collects_it_once(
    any_store: StoreApi, layout: HomeLayout, home: Path
) -> None:
    # Three attempts allowed; the lost start and two resets use them all up, two more resets follow.
    with RunningSimulator(fast_options(cost=COST)) as sim:
        _storm(sim, resets=4)
        batch = (await enqueue(any_store, layout, prompts(1))).batch
        settings = wireflow_engine_settings(home, sim, max_attempts=3)
        reason, _ = await run_engine(any_store, settings, layout, [batch.id])
        stats = sim.state.stats()
    [job] = await any_store.jobs.jobs_for_batch(batch.id)
    assert reason.code == "done"
    assert job.state is JobState.DONE, (job.state, job.error_message)
    assert job.execution is Execution.FINISHED
    assert stats["executions_created"] == 1 and stats["replays"] >= 1
    assert stats["credits"]["charged"] == COST
    ledger = any_store.ledger
    assert await ledger.charged(batch_id=batch.id) == COST
    assert await ledger.reserved_total() == 0.0


async def test_a_storm_past_the_resolution_fails_saying_a_paid_image_may_exist_and_retry_collects_it(
    any_store: StoreApi, layout: HomeLayout, home: Path
) -> None:
    with RunningSimulator(fast_options(cost=COST)) as sim:
        _storm(sim, resets=20)  # more than attempts and resolution together
        batch = (await enqueue(any_store, layout, prompts(1))).batch
        settings = wireflow_engine_settings(home, sim, max_attempts=2)
        await run_engine(any_store, settings, layout, [batch.id])
        [failed] = await any_store.jobs.jobs_for_batch(batch.id)
        assert failed.state is JobState.FAILED
        assert failed.execution is Execution.MAYBE  # its reservation stays: it may charge
        message = failed.error_message or ""
        assert "a paid image may exist" in message, message
        assert f"wfbatch retry {failed.id}" in message, message

        while sim.state.take_queued_fault("execute") is not None:  # the storm is over
            pass
        assert await any_store.jobs.requeue_for_retry([failed.id]) == [failed.id]
        reason, _ = await run_engine(any_store, settings, layout, [batch.id])
        stats = sim.state.stats()
    [job] = await any_store.jobs.jobs_for_batch(batch.id)
    assert reason.code == "done"
    assert job.state is JobState.DONE, (job.state, job.error_message)
    assert stats["executions_created"] == 1  # the retry replayed the key: collected, not paid again
    assert await any_store.ledger.charged(batch_id=batch.id) == COST
    assert await any_store.ledger.reserved_total() == 0.0


async def test_a_known_execution_given_up_is_settled_once_it_finishes(
    any_store: StoreApi, layout: HomeLayout, home: Path
) -> None:
    # The execution runs longer than the job may wait: the job fails, the execution goes on and is
    # charged. The engine learns that charge on its own, and a retry downloads without paying again.
    with RunningSimulator(fast_options(cost=COST, latency=(3.0, 3.0))) as sim:
        batch = (await enqueue(any_store, layout, prompts(1))).batch
        settings = wireflow_engine_settings(home, sim, max_run_seconds=0.2, max_attempts=1)
        await run_engine(any_store, settings, layout, [batch.id])
        [failed] = await any_store.jobs.jobs_for_batch(batch.id)
        assert failed.state is JobState.FAILED and failed.execution is Execution.MAYBE
        message = failed.error_message or ""
        assert "a paid image may exist" in message, message
        assert f"wfbatch retry {failed.id}" in message, message
        engine = Engine(any_store, settings, layout, batch_ids=[batch.id])

        async def settled() -> bool:
            await engine.settle_canceled_executions()
            job = await any_store.jobs.get_job(failed.id)
            return job is not None and job.execution is Execution.FINISHED

        await _until(settled, "the failed job's execution to be settled")
        await engine.pool.aclose()
        assert await any_store.ledger.charged(batch_id=batch.id) == COST
        assert await any_store.ledger.reserved_total() == 0.0

        assert await any_store.jobs.requeue_for_retry([failed.id]) == [failed.id]
        reason, _ = await run_engine(any_store, settings, layout, [batch.id])
        stats = sim.state.stats()
    [job] = await any_store.jobs.jobs_for_batch(batch.id)
    assert reason.code == "done" and job.state is JobState.DONE
    assert stats["executions_created"] == 1
    assert await any_store.ledger.charged(batch_id=batch.id) == COST
