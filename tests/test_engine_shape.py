"""What the engine's shape promises, pinned so that breaking it turns a test red: an outcome is
recorded whole whatever cancels the job meanwhile, a start the provider accepted is never lost to a
shutdown, and polls carry their job's priority to the provider's gate."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest_sim import fast_options
from tests.deadlines import patience
from tests.engine_sim import enqueue, prompts, run_engine, wireflow_engine_settings
from tests.test_fal import enqueue as enqueue_fal
from tests.test_fal import fal_config, fal_sim, lines
from wfbatch.core.states import Execution, JobState
from wfbatch.engine.intake.control import Control
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.home import HomeLayout
from wfbatch.providers.base import RequestKind
from wfbatch.sim import RunningSimulator
from wfbatch.store import OutcomeRecord, Store


async def cancel_job_task_during(
    store: Store, engine: Engine, wanted: Callable[[OutcomeRecord], bool], at_statement: int
) -> list[int]:
    """Make `store.jobs.record_outcome` cancel the calling job's task (as a shutdown or a hand cancel
    would) at its `at_statement`-th SQL statement, for outcomes `wanted` picks. Returns the list
    the interrupted job ids are appended to. The statements are seen through SQLite's trace
    callback on the store's writer connection, the job's task by the name the engine gives it."""
    loop = asyncio.get_running_loop()
    original_record = store.jobs.record_outcome
    interrupted: list[int] = []
    state: dict[str, Any] = {"job": None, "count": 0}

    def cancel(job_id: int) -> None:
        name = f"job-{job_id}"
        task = next((t for t in asyncio.all_tasks(loop) if t.get_name() == name), None)
        if task is not None and not task.done():
            task.cancel()
            interrupted.append(job_id)

    def trace(_statement: str) -> None:  # on the connection's thread, as each statement starts
        job_id = state["job"]
        if job_id is not None:
            state["count"] += 1
            if state["count"] == at_statement:
                loop.call_soon_threadsafe(cancel, job_id)

    async def record(job_id: int, record: OutcomeRecord) -> bool:
        if not wanted(record) or interrupted:
            return await original_record(job_id, record)
        state.update(job=job_id, count=0)
        try:
            return await original_record(job_id, record)
        finally:
            state["job"] = None

    async with store.transaction() as conn:
        await conn.set_trace_callback(trace)
    store.jobs.record_outcome = record  # type: ignore[method-assign]
    return interrupted


async def run_until(
    engine: Engine, done: Callable[[], Awaitable[bool]], within: float = patience(15.0)
) -> None:
    stop = asyncio.Event()
    running = asyncio.create_task(engine.run_forever(stop))
    deadline = asyncio.get_running_loop().time() + within
    try:
        while not await done():
            assert asyncio.get_running_loop().time() < deadline, "timed out"
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await running
        await engine.shutdown()


@pytest.mark.parametrize("at_statement", [1, 2, 3, 4, 5, 6])
async def test_a_failure_is_recorded_whole_whatever_cancels_the_job_meanwhile(
    store: Store, layout: HomeLayout, home: Path, at_statement: int
) -> None:
    """The job fails (its execution FAILED at the provider): the attempt, the state, the error and
    the ledger's release are one transaction, shielded, so a cancel at any of its statements
    leaves the job and the ledger consistent."""
    with RunningSimulator(fast_options(cost=1, fail_marker="BAD")) as sim:
        batch = (await enqueue(store, layout, b'{"prompt": "BAD one", "width": 64, "height": 64}')).batch
        engine = Engine(store, wireflow_engine_settings(home, sim), layout)
        interrupted = await cancel_job_task_during(
            store, engine, lambda record: record.target is JobState.FAILED, at_statement
        )

        async def settled() -> bool:
            (job,) = await store.jobs.jobs_for_batch(batch.id)
            return job.state is JobState.FAILED

        await run_until(engine, settled)
    assert interrupted, "the cancel never reached the recording"
    (job,) = await store.jobs.jobs_for_batch(batch.id)
    assert job.state is JobState.FAILED and job.error_message is not None
    assert job.execution is Execution.ENDED and job.reserved is None
    ledger = store.ledger
    assert await ledger.batch_exposure(batch.id) == 0  # reserved, then released: nothing charged
    attempts = await store.jobs.attempts_for(job.id)
    assert [a.kind for a in attempts].count("job") == 1


async def test_a_start_the_provider_accepted_survives_a_shutdown_at_that_moment(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with RunningSimulator(fast_options(cost=1, latency=(0.3, 0.4))) as sim:
        batch = (await enqueue(store, layout, prompts(1))).batch
        engine = Engine(store, wireflow_engine_settings(home, sim), layout)
        interrupted = await cancel_job_task_during(
            store, engine, lambda record: record.attempt is not None and record.attempt.kind == "start", 2
        )

        async def recorded() -> bool:
            return bool(interrupted) and (await store.jobs.jobs_for_batch(batch.id))[0].remote_id is not None

        await run_until(engine, recorded)
        (job,) = await store.jobs.jobs_for_batch(batch.id)
        assert job.state is JobState.RUNNING and job.handle is not None
        # The next start resumes the same execution: one execution, one charge.
        reason, _ = await run_engine(store, wireflow_engine_settings(home, sim), layout, [batch.id])
        stats = sim.state.stats()
    assert reason.code == "done"
    assert stats["executions_created"] == 1


async def test_polls_carry_their_jobs_priority_to_the_gate(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    """When requests are scarce the polls of the longest-running executions go first: that needs
    each poll's priority (how long its execution has run) to reach the limiter."""
    with RunningSimulator(fast_options(latency=(0.4, 0.5))) as sim:
        batch = (await enqueue(store, layout, prompts(3))).batch
        engine = Engine(store, wireflow_engine_settings(home, sim), layout, batch_ids=[batch.id])
        limiter = engine.pool.limiter("wireflow")
        seen: list[float] = []
        acquire = limiter.acquire

        async def spy(kind: RequestKind, priority: float = 0.0) -> None:
            if kind is RequestKind.POLL:
                seen.append(priority)
            await acquire(kind, priority)

        limiter.acquire = spy  # type: ignore[method-assign]
        reason = await engine.run_until_idle()
    assert reason.code == "done"
    assert seen and min(seen) > 0.0, seen


async def test_a_hand_cancel_of_a_running_job_reaches_the_provider(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    """fal can stop queued or running work (`PUT cancel_url`): a hand cancel asks it to, so the paid
    work stops too, not just our bookkeeping."""
    with fal_sim(latency=(1.5, 2.0)) as sim:
        batch_id = await enqueue_fal(store, layout, lines(1))
        engine = Engine(store, fal_config(home, sim), layout)
        stop = asyncio.Event()
        running = asyncio.create_task(engine.run_forever(stop))
        try:

            async def started() -> bool:
                return bool(await store.jobs.job_ids(states=[JobState.RUNNING]))

            deadline = asyncio.get_running_loop().time() + patience(10)
            while not await started():
                assert asyncio.get_running_loop().time() < deadline, "the job never started"
                await asyncio.sleep(0.02)
            (job_id,) = await store.jobs.job_ids(states=[JobState.RUNNING])
            await Control(engine).cancel([job_id])
        finally:
            stop.set()
            await running
            await engine.shutdown()
        canceled = sim.state.stats()["fal"]["canceled"]
    assert canceled == 1
    attempts = [a.kind for a in await store.jobs.attempts_for(job_id)]
    assert "cancel" in attempts
    assert (await store.jobs.jobs_for_batch(batch_id))[0].state is JobState.CANCELED
