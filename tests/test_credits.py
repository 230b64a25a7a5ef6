"""Credits: the ledger, budgets and caps, and `plan` against an actual run, on the simulator."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from tests.conftest_sim import CountingGate, fast_options
from tests.deadlines import scaled
from tests.engine_sim import enqueue, prompts, run_engine, wireflow_engine_settings
from tests.test_store import make_batch, make_jobs
from wfbatch.core.parsing import parse_prompt_bytes
from wfbatch.core.states import JobState
from wfbatch.engine.clock import SystemClock
from wfbatch.engine.loop.budget import Budget
from wfbatch.engine.loop.idle import StopReason
from wfbatch.engine.loop.pool import credits_reason
from wfbatch.engine.planning.plan import make_plan
from wfbatch.home import HomeLayout
from wfbatch.providers.errors import OutOfCredits
from wfbatch.providers.local.provider import LocalProvider
from wfbatch.providers.local.settings import LocalSettings
from wfbatch.settings import load_settings
from wfbatch.sim import RunningSimulator
from wfbatch.store import BatchRow, Store, StoreApi
from wfbatch.store.ledger import write_release_and_charge


async def test_reservations_are_reconciled_with_the_providers_charges(
    any_store: StoreApi, layout: HomeLayout, home: Path
) -> None:
    with RunningSimulator(fast_options(cost=2.5)) as sim:
        batch = (await enqueue(any_store, layout, prompts(4))).batch
        reason, _ = await run_engine(any_store, wireflow_engine_settings(home, sim), layout, [batch.id])
        charged_by_sim = sim.state.stats()["credits"]["charged"]
    assert reason.code == "done"
    ledger = any_store.ledger
    assert await ledger.charged(batch_id=batch.id) == charged_by_sim == 10.0
    assert await ledger.reserved_total() == 0
    assert [j.credits for j in await any_store.jobs.jobs_for_batch(batch.id)] == [2.5] * 4


async def test_failed_executions_release_their_reservation(
    any_store: StoreApi, layout: HomeLayout, home: Path
) -> None:
    with RunningSimulator(fast_options(cost=1, fail_marker="BAD")) as sim:
        raw = prompts(2) + b'\n{"prompt": "BAD one", "width": 64, "height": 64}'
        batch = (await enqueue(any_store, layout, raw)).batch
        await run_engine(any_store, wireflow_engine_settings(home, sim), layout, [batch.id])
        charged_by_sim = sim.state.stats()["credits"]["charged"]
    ledger = any_store.ledger
    assert await ledger.charged(batch_id=batch.id) == charged_by_sim == 2.0
    assert await ledger.batch_exposure(batch.id) == 2.0  # nothing left reserved for the failure
    assert await ledger.reserved_total() == 0


async def run_capped(
    store: StoreApi, layout: HomeLayout, home: Path, **sim_options: Any
) -> tuple[BatchRow, StopReason, dict[str, Any]]:
    """Nine prompts at 1 credit each under a budget of 5, run on a Wireflow simulator."""
    spec = {
        "name": "capped",
        "budget": 5,
        "defaults": {"width": 64, "height": 64},
        "prompts": [f"p{i}" for i in range(9)],
    }
    raw = json.dumps(spec).encode()
    with RunningSimulator(fast_options(cost=1, **sim_options)) as sim:
        batch = (await enqueue(store, layout, raw, "capped.json")).batch
        reason, _ = await run_engine(store, wireflow_engine_settings(home, sim), layout, [batch.id])
        return batch, reason, sim.state.stats()


async def test_a_budget_is_exact_to_the_credit_and_leaves_the_rest_queued(
    any_store: StoreApi, layout: HomeLayout, home: Path
) -> None:
    batch, reason, stats = await run_capped(any_store, layout, home)
    assert stats["executions_created"] == 5
    assert stats["credits"]["charged"] == 5
    assert reason.code == "paused" and "budget reached" in reason.message and "of 5 credits" in reason.message
    counts = await any_store.counters.counts([batch.id])
    assert counts["done"] == 5 and counts["queued"] == 4 and counts["failed"] == 0


async def test_an_unknown_cost_under_a_budget_starts_one_job_at_a_time_until_a_charge_tells_it(
    any_store: StoreApi, layout: HomeLayout, home: Path
) -> None:
    # No estimate (the provider cannot predict this graph, or its estimate request failed): jobs
    # started side by side would reserve nothing and all slip under the budget. One goes first; its
    # charge teaches the cost, and the budget is then exact as usual.
    _, reason, stats = await run_capped(any_store, layout, home, estimate_incomplete=True)
    assert stats["executions_created"] == 5
    assert stats["credits"]["charged"] == 5
    assert reason.code == "paused" and "budget reached" in reason.message


async def test_the_daily_credit_cap_pauses_the_provider(
    any_store: StoreApi, layout: HomeLayout, home: Path
) -> None:
    with RunningSimulator(fast_options(cost=2)) as sim:
        batch = (await enqueue(any_store, layout, prompts(5))).batch
        settings = wireflow_engine_settings(home, sim, daily_credit_cap=6)
        reason, _ = await run_engine(any_store, settings, layout, [batch.id])
        assert sim.state.stats()["credits"]["charged"] == 6
    assert reason.code == "paused" and "daily credit cap" in reason.message


async def test_a_402_goes_through_the_ledger(any_store: StoreApi, layout: HomeLayout, home: Path) -> None:
    with RunningSimulator(fast_options(credits=2, cost=1)) as sim:
        batch = (await enqueue(any_store, layout, prompts(5))).batch
        reason, _ = await run_engine(
            any_store, wireflow_engine_settings(home, sim, max_in_flight=1), layout, [batch.id]
        )
    assert reason.code == "paused" and "2 available" not in reason.message
    ledger = any_store.ledger
    assert await ledger.charged(batch_id=batch.id) == 2
    assert await ledger.reserved_total() == 0  # the refused start's reservation was released


async def test_a_crash_leaks_no_reservation(any_store: StoreApi, layout: HomeLayout, home: Path) -> None:
    with RunningSimulator(fast_options(cost=1)) as sim:
        batch = (await enqueue(any_store, layout, prompts(3))).batch
        jobs = await any_store.jobs.jobs_for_batch(batch.id)
        ledger = any_store.ledger
        # Killed right after reserving, before the job left the queue: a leaked reservation.
        await ledger.reserve(jobs[0].id, batch.id, "wireflow", 1.0)
        # Killed after the start was sent: the job is `submitting` with its reservation.
        await ledger.reserve(jobs[1].id, batch.id, "wireflow", 1.0)
        await any_store.jobs.transition(jobs[1].id, [JobState.QUEUED], JobState.SUBMITTING, attempts=1)
        reason, _ = await run_engine(any_store, wireflow_engine_settings(home, sim), layout, [batch.id])
        stats = sim.state.stats()
    assert reason.code == "done"
    assert await ledger.reserved_total() == 0
    assert await ledger.charged(batch_id=batch.id) == stats["credits"]["charged"] == 3
    assert await ledger.batch_exposure(batch.id) == 3  # each job charged once, nothing double-counted


async def test_plan_matches_an_actual_run(any_store: StoreApi, layout: HomeLayout, home: Path) -> None:
    options = fast_options(latency=(0.4, 0.6), cost=3, epm=4, rpm=60, window=2.0)
    raw = prompts(10) + b"\n" + prompts(2)  # two duplicates
    with RunningSimulator(options) as sim:
        settings = wireflow_engine_settings(
            home,
            sim,
            executions_per_minute=4,
            requests_per_minute=60,
            rate_window_seconds=2.0,
            expected_latency=0.5,
            poll_initial=0.2,
            poll_max=0.5,
        )
        plan = await make_plan(any_store, settings, [parse_prompt_bytes(raw, "p.jsonl")])
        assert plan.jobs == 12 and plan.unique_jobs == 10 and plan.cache_hits == 0
        assert plan.unknown_cost_jobs == 0
        batch = (await enqueue(any_store, layout, raw)).batch
        reason, _ = await run_engine(any_store, settings, layout, [batch.id])
        charged = sim.state.stats()["credits"]["charged"]
        executions = list(sim.state.book.executions.values())
    assert reason.code == "done"
    assert plan.estimated_credits is not None
    assert abs(plan.estimated_credits - charged) <= 0.1 * charged
    # The run as the provider saw it, from the first start to the last image ready: paced by its
    # rate windows and latencies, which the plan models. A stopwatch around the whole run would
    # also time the engine's start-up and a loaded machine (it did, and flaked).
    ran = max(e.ready_at for e in executions) - min(e.created_at for e in executions)
    assert abs(plan.estimated_seconds - ran) <= 0.25 * ran, (plan.estimated_seconds, ran)
    again = await make_plan(any_store, settings, [parse_prompt_bytes(raw, "p.jsonl")])
    assert again.cache_hits == 10 and again.jobs_left == 0 and again.estimated_credits == 0


async def test_plan_says_where_a_budget_or_daily_cap_stops(any_store: StoreApi, home: Path) -> None:
    spec = {
        "name": "b",
        "budget": 7,
        "defaults": {"width": 64, "height": 64},
        "prompts": [f"x{i}" for i in range(10)],
    }
    with RunningSimulator(fast_options(cost=2)) as sim:
        settings = wireflow_engine_settings(home, sim)
        plan = await make_plan(any_store, settings, [parse_prompt_bytes(json.dumps(spec).encode(), "b.json")])
        assert plan.stops_at == {"reason": "budget of 7 credits of batch 'b'", "after_jobs": 3}
        capped = wireflow_engine_settings(home, sim, daily_executions=4)
        plan = await make_plan(any_store, capped, [parse_prompt_bytes(json.dumps(spec).encode(), "b.json")])
        assert plan.stops_at is not None and plan.stops_at["after_jobs"] == 3  # the budget still binds first


def test_a_credit_pause_says_the_provider_and_out_of_credits_once() -> None:
    stability = OutOfCredits("stability: out of credits (payment_required): buy more", status=402)
    assert credits_reason("stability", stability) == "out of credits (payment_required): buy more"
    fal = OutOfCredits("fal: account locked, out of credit or billing (Exhausted balance)", status=403)
    said = "out of credits: account locked, out of credit or billing (Exhausted balance)"
    assert credits_reason("fal", fal) == said
    known = OutOfCredits("Insufficient credits", status=402, required=10, available=3)
    assert credits_reason("wireflow", known) == "out of credits: 10 required, 3 available"


async def test_a_budget_check_never_reads_another_transaction_half_done(store: Store, home: Path) -> None:
    # Reads on the shared connection see the statements of a transaction still open on it. A job's
    # settlement writes its release (-1) and then its charge (+1): read between the two, the batch
    # looked one credit short of its budget and a sixth job of a budget of 5 went out (seen in CI).
    batch = dataclasses.replace(make_batch(), budget=5.0)
    await store.batches.insert_batch(batch, make_jobs(6))
    jobs = await store.jobs.list_jobs()
    ledger = store.ledger
    for job in jobs[:5]:
        await ledger.reserve(job.id, batch.id, "local", 1.0)
    budget = Budget(store, load_settings(home, local={"costs": {"default": 1.0}}), SystemClock())
    release_written, go_on = asyncio.Event(), asyncio.Event()

    async def settle_slowly() -> None:
        async with store.transaction() as conn:
            row = {"batch_id": batch.id, "provider": "local", "reserved": 1.0}
            await write_release_and_charge(conn, jobs[0].id, row, 0.0, time.time())  # the release
            release_written.set()
            await go_on.wait()
            await write_release_and_charge(conn, jobs[0].id, {**row, "reserved": None}, 1.0, time.time())

    settling = asyncio.create_task(settle_slowly())
    await release_written.wait()
    local = LocalProvider(LocalSettings(), CountingGate())
    admitting = asyncio.create_task(budget.admit(jobs[5], batch, local))
    # Room for a read that does not wait for the transaction: it answers now (a check that waited
    # for the writer would answer after go_on; the bound only keeps that design from hanging here).
    await asyncio.wait([admitting], timeout=scaled(5))
    go_on.set()
    await settling
    admission = await admitting
    assert admission.refusal is not None and "budget reached: 5 of 5" in admission.refusal
