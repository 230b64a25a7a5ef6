"""A review change never cancels a final that started, and a later approval gets the user their
final without paying for it twice. Real engine, real SQLite, the Wireflow simulator on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.conftest_sim import fast_options
from tests.engine_sim import wireflow_engine_settings
from wfbatch.core.parsing import parse_prompt_bytes
from wfbatch.core.states import Execution, JobState, ReviewStatus
from wfbatch.engine.intake.control import Control
from wfbatch.engine.intake.ingest import ingest
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.home import HomeLayout
from wfbatch.settings import Settings
from wfbatch.sim import RunningSimulator
from wfbatch.store import JobRow, Reuse, Store

WAIT = 20.0
DRAFT_COST = FINAL_COST = 2.0
STARTED = (JobState.SUBMITTING, JobState.RUNNING, JobState.DONE)


class CheckThenActStore(Store):
    """The real store, with a hook between `final_of`'s read and its answer: the window between a
    "has this final started?" check and what is done on its answer, opened as wide as a test needs."""

    between: Callable[[JobRow], Awaitable[None]] | None = None

    async def final_of(self, draft_id: int) -> JobRow | None:
        final = await super().final_of(draft_id)
        between, self.between = self.between, None
        if between is not None and final is not None:
            await between(final)
        return final


async def _until(predicate: Callable[[], Awaitable[bool]], what: str, within: float = WAIT) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def _pipeline(count: int) -> bytes:
    return json.dumps(
        {
            "name": "pipeline",
            "prompts": [f"a lighthouse, take {i}" for i in range(count)],
            "draft": {"width": 64, "height": 64},
            "final": {"width": 128, "height": 128},
        }
    ).encode()


@asynccontextmanager
async def _running(store: Store, settings: Settings, layout: HomeLayout) -> AsyncIterator[Control]:
    """Drafts made and done, then the engine running in the background, steered through Control."""
    raw = _pipeline(1)
    parsed = parse_prompt_bytes(raw, "p.json")
    batch = (await ingest(store, layout, parsed, raw, "wireflow", reuse=Reuse.NEVER)).batch
    await Engine(store, settings, layout, batch_ids=[batch.id]).run_until_idle()
    engine = Engine(store, settings, layout)
    stop = asyncio.Event()
    running = asyncio.create_task(engine.run_forever(stop))
    try:
        yield Control(engine)
    finally:
        stop.set()
        await asyncio.wait_for(running, WAIT)
        await engine.shutdown()


async def _state(store: Store, job_id: int) -> JobState:
    job = await store.jobs.get_job(job_id)
    assert job is not None
    return job.state


async def _one_draft(store: Store) -> JobRow:
    [draft] = await store.jobs.list_jobs(states=[JobState.DONE])
    return draft


@pytest.fixture
async def race_store(layout: HomeLayout) -> AsyncIterator[CheckThenActStore]:
    opened = await CheckThenActStore.open(layout.db)
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_final_that_starts_while_its_draft_is_rejected_is_not_canceled_and_approval_gets_it(
    race_store: CheckThenActStore, layout: HomeLayout, home: Path
) -> None:
    store = race_store
    with RunningSimulator(fast_options(cost=FINAL_COST, latency=(0.3, 0.3))) as sim:
        settings = wireflow_engine_settings(home, sim)
        async with _running(store, settings, layout) as control:
            draft = await _one_draft(store)
            await control.pause("global")  # the final stays queued until the check has read it
            await control.review([draft.id], ReviewStatus.APPROVED)
            final = await store.drafts.final_of(draft.id)
            assert final is not None and final.state is JobState.QUEUED

            async def start_it(read: JobRow) -> None:
                # The check read the final as not started; now it starts, before the act.
                await control.resume("global")

                async def started() -> bool:
                    return await _state(store, read.id) in STARTED

                await _until(started, "the final to start")

            store.between = start_it
            await control.review([draft.id], ReviewStatus.REJECTED)
            store.between = None  # the window is this review's; a change that reads nothing opens none
            await control.resume("global")
            after_reject = await store.jobs.get_job(final.id)
            assert after_reject is not None
            # Canceled only if it never started: nothing sent, nothing to pay.
            if after_reject.state is JobState.CANCELED:
                assert after_reject.execution is Execution.NONE and after_reject.attempts == 0

            await control.review([draft.id], ReviewStatus.APPROVED)

            async def final_done() -> bool:
                return await _state(store, final.id) is JobState.DONE

            await _until(final_done, "the approved draft's final")
        stats = sim.state.stats()
    assert stats["executions_created"] == 2  # the draft and its final, each paid once
    assert await store.ledger.charged() == DRAFT_COST + FINAL_COST == stats["credits"]["charged"]


async def test_a_started_final_is_never_canceled_by_a_review_change(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with RunningSimulator(fast_options(cost=FINAL_COST, latency=(0.5, 0.5))) as sim:
        settings = wireflow_engine_settings(home, sim)
        async with _running(store, settings, layout) as control:
            draft = await _one_draft(store)
            await control.review([draft.id], ReviewStatus.APPROVED)
            final = await store.drafts.final_of(draft.id)
            assert final is not None

            async def started() -> bool:
                return await _state(store, final.id) in STARTED

            await _until(started, "the final to start")
            rejected = await control.review([draft.id], ReviewStatus.REJECTED)
            pending = await control.review([draft.id], ReviewStatus.PENDING)
            assert "final" not in rejected.message + pending.message
            assert await _state(store, final.id) in STARTED

            async def final_done() -> bool:
                return await _state(store, final.id) is JobState.DONE

            await _until(final_done, "the started final to finish")
        stats = sim.state.stats()
    assert stats["executions_created"] == 2


async def test_approval_collects_a_final_canceled_while_it_ran_without_paying_again(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    # Executions long enough that the final is canceled while it runs, whatever the machine's load.
    with RunningSimulator(fast_options(cost=FINAL_COST, latency=(2.0, 2.0))) as sim:
        settings = wireflow_engine_settings(home, sim)
        async with _running(store, settings, layout) as control:
            draft = await _one_draft(store)
            await control.review([draft.id], ReviewStatus.APPROVED)
            final = await store.drafts.final_of(draft.id)
            assert final is not None

            async def running() -> bool:
                job = await store.jobs.get_job(final.id)
                return job is not None and job.remote_id is not None

            await _until(running, "the final's execution to exist")
            await control.cancel([final.id])
            canceled = await store.jobs.get_job(final.id)
            assert canceled is not None and canceled.state is JobState.CANCELED
            assert canceled.execution is Execution.MAYBE

            again = await control.review([draft.id], ReviewStatus.APPROVED)
            assert "1 final queued" in again.message, again.message

            async def final_done() -> bool:
                return await _state(store, final.id) is JobState.DONE

            await _until(final_done, "the canceled final to be collected")
        stats = sim.state.stats()
    assert stats["executions_created"] == 2  # collected, not made again
    assert await store.ledger.charged() == DRAFT_COST + FINAL_COST
