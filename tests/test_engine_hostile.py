"""The real engine against a hostile simulator: what a broken or malicious provider answers must not
spend past a budget, corrupt the ledger, hold a job forever or put the API key on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest_sim import fast_options
from tests.engine_sim import TEST_KEY, enqueue, prompts, run_engine, wireflow_engine_settings
from wfbatch.core.states import JobState
from wfbatch.home import HomeLayout
from wfbatch.sim import RunningSimulator
from wfbatch.store import Store, StoreApi


def budgeted(count: int, budget: float) -> bytes:
    spec = {
        "name": "capped",
        "budget": budget,
        "defaults": {"width": 64, "height": 64},
        "prompts": [f"p{i}" for i in range(count)],
    }
    return json.dumps(spec).encode()


def files_holding(root: Path, secret: str) -> tuple[list[str], list[str]]:
    """(every file under root, those whose bytes contain the secret): SQLite, its WAL, manifests."""
    files = [path for path in root.rglob("*") if path.is_file()]
    return [str(p) for p in files], [str(p) for p in files if secret.encode() in p.read_bytes()]


@pytest.mark.parametrize("fault", ["credits_negative", "credits_nan"])
async def test_nonsense_charges_cannot_spend_past_a_budget(
    any_store: StoreApi, layout: HomeLayout, home: Path, fault: str
) -> None:
    with RunningSimulator(fast_options(cost=1)) as sim:
        sim.state.queue_fault(fault, route="poll", count=1000)
        batch = (await enqueue(any_store, layout, budgeted(10, 3), "capped.json")).batch
        reason, _ = await run_engine(any_store, wireflow_engine_settings(home, sim), layout, [batch.id])
        created = sim.state.stats()["executions_created"]
    assert created == 3
    assert reason.code == "paused" and "budget reached" in reason.message
    counts = await any_store.counters.counts([batch.id])
    assert counts["done"] == 3 and counts["queued"] == 7
    assert await any_store.ledger.charged(batch_id=batch.id) == 3.0  # the estimate, not "-50" / NaN
    assert await any_store.ledger.reserved_total() == 0


async def test_an_echoed_key_never_reaches_the_disk(store: Store, layout: HomeLayout, home: Path) -> None:
    with RunningSimulator(fast_options()) as sim:
        sim.state.queue_fault("echo_key", route="poll", count=1000)
        sim.state.queue_fault("echo_key", route="execute", count=1)
        batch = (await enqueue(store, layout, prompts(3))).batch
        await run_engine(store, wireflow_engine_settings(home, sim), layout, [batch.id])
    jobs = await store.jobs.jobs_for_batch(batch.id)
    assert sum(job.state is JobState.DONE for job in jobs) >= 2
    assert any("[redacted]" in (job.remote_id or "") for job in jobs)  # the echoed execution id
    await store.close()
    files, leaked = files_holding(home, TEST_KEY)
    assert leaked == []
    assert any(name.endswith("manifest.json") for name in files)


async def test_a_trickling_poll_answer_cannot_hold_a_job_past_max_run_seconds(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with RunningSimulator(fast_options(trickle_seconds=0.2)) as sim:
        sim.state.queue_fault("trickle", route="poll", count=1000)
        batch = (await enqueue(store, layout, prompts(1))).batch
        settings = wireflow_engine_settings(
            home, sim, request_deadline=0.5, max_run_seconds=1.0, max_attempts=2
        )
        reason, _ = await run_engine(store, settings, layout, [batch.id])
    assert reason.code == "done"
    job = (await store.jobs.jobs_for_batch(batch.id))[0]
    assert job.state is JobState.FAILED
    assert job.error_message is not None
    assert "no complete answer within 0.5 s" in job.error_message or "still not finished" in job.error_message
