"""Batches share a provider's starts by weight, by priority first: the engine with the local
provider, a real SQLite file, and the start times the store recorded (never the wall clock)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.deadlines import patience
from wfbatch.core.parsing import parse_prompt_bytes
from wfbatch.core.states import JobState
from wfbatch.engine.intake.ingest import ingest
from wfbatch.engine.loop.fairshare import Claim, FairShare, shares, starts_until_done
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.engine.planning.forecast import estimate_seconds
from wfbatch.engine.planning.plan import make_plan, schedule_model
from wfbatch.home import HomeLayout
from wfbatch.protocol import Event, JobEvent
from wfbatch.store import BatchRow, JobRow, Reuse, Store


def prompts(count: int, prefix: str) -> bytes:
    return "\n".join(
        json.dumps({"prompt": f"{prefix} {i}", "width": 32, "height": 32}) for i in range(count)
    ).encode()


async def enqueue(store: Store, layout: HomeLayout, raw: bytes, name: str) -> BatchRow:
    return (await ingest(store, layout, parse_prompt_bytes(raw, name), raw, "local", reuse=Reuse.NEVER)).batch


def batch(batch_id: str, *, priority: int = 0, weight: float = 1.0) -> BatchRow:
    return BatchRow(
        id=batch_id, name=batch_id, source_name=batch_id, content_hash=batch_id, provider="local",
        cache_enabled=True, budget=None, output_dir="/nowhere", paused=False, created_at=0.0,
        priority=priority, weight=weight,
    )


def turns(share: FairShare, batches: list[BatchRow], starts: int) -> list[str]:
    """The batches of `starts` starts, in order, one round at a time (one start a round)."""
    taken = []
    for _ in range(starts):
        round_ = share.round("p", batches)
        chosen = round_.next()
        assert chosen is not None
        round_.started(chosen.id)
        taken.append(chosen.id)
    return taken


def test_weights_share_the_starts_and_a_newcomer_is_not_owed_the_past() -> None:
    share = FairShare()
    big = batch("big")
    assert turns(share, [big], 50) == ["big"] * 50
    small = batch("small")
    # Joins level with the big one: every other start, not 50 in a row.
    assert turns(share, [big, small], 6) == ["big", "small"] * 3
    heavy = batch("small", weight=3.0)
    taken = turns(share, [big, heavy], 40)
    assert taken.count("small") == 30 and taken.count("big") == 10


def test_a_higher_priority_batch_goes_first_and_the_others_share_after_it() -> None:
    share = FairShare()
    a, b = batch("a"), batch("b")
    assert turns(share, [a, b], 4) == ["a", "b", "a", "b"]
    urgent = batch("b", priority=5)
    assert turns(share, [a, urgent], 3) == ["b", "b", "b"]
    # Back at the same priority: b got three more while it was urgent, so a catches up first.
    assert turns(share, [a, b], 6) == ["a", "a", "a", "a", "b", "a"]


def started_between(jobs: list[JobRow], low: float, high: float) -> int:
    return sum(1 for job in jobs if job.started_at is not None and low <= job.started_at <= high)


async def test_a_small_batch_dropped_after_a_big_one_finishes_first_with_half_the_starts(
    store: Store, layout: HomeLayout, make_settings: Any
) -> None:
    big = await enqueue(store, layout, prompts(300, "big"), "big.jsonl")
    some_done = asyncio.Event()
    done: list[int] = []

    def seen(event: Event) -> None:
        if isinstance(event, JobEvent) and event.state is JobState.DONE and event.batch_id == big.id:
            done.append(event.id)
            if len(done) >= 20:
                some_done.set()

    engine = Engine(store, make_settings(), layout, events=seen)  # every batch, as the daemon runs
    running = asyncio.create_task(engine.run_until_idle())
    await asyncio.wait_for(some_done.wait(), patience())
    small = await enqueue(store, layout, prompts(10, "small"), "small.jsonl")
    engine.wake()
    reason = await asyncio.wait_for(running, patience(120))
    assert reason.code == "done", reason

    big_jobs = await store.jobs.jobs_for_batch(big.id)
    small_jobs = await store.jobs.jobs_for_batch(small.id)
    assert all(job.state is JobState.DONE for job in big_jobs + small_jobs)
    small_starts = sorted(job.started_at for job in small_jobs if job.started_at is not None)
    small_finished = max(job.finished_at for job in small_jobs if job.finished_at is not None)
    big_last_start = max(job.started_at for job in big_jobs if job.started_at is not None)
    assert small_finished < big_last_start  # the small one finished while the big one still ran
    # While both were runnable (the small one's first start to its last), they took turns.
    big_meanwhile = started_between(big_jobs, small_starts[0], small_starts[-1])
    assert abs(big_meanwhile - len(small_starts)) <= 2, (big_meanwhile, len(small_starts))


def test_eta_claims_count_every_batchs_share_until_the_last_start() -> None:
    big, small = Claim("big", 300), Claim("small", 10)
    assert starts_until_done([big, small]) == {"big": 310, "small": 20}
    heavy = Claim("small", 10, weight=4)
    assert starts_until_done([big, heavy])["small"] == 10 + 3  # 2.5 starts of big, rounded up
    urgent = Claim("small", 10, priority=1)
    assert starts_until_done([big, urgent]) == {"big": 310, "small": 10}
    assert shares([big, urgent]) == {"big": 0.0, "small": 1.0}


async def test_plan_counts_the_share_of_the_batches_already_queued(
    store: Store, layout: HomeLayout, make_settings: Any
) -> None:
    settings = make_settings(local={"expected_latency": 1.0})
    raw = prompts(10, "planned")
    alone = (await make_plan(store, settings, [parse_prompt_bytes(raw, "p.jsonl")])).providers["local"]
    assert (alone.share, alone.shared_with) == (1.0, 0)
    await enqueue(store, layout, prompts(300, "queued"), "queued.jsonl")
    shared = (await make_plan(store, settings, [parse_prompt_bytes(raw, "p.jsonl")])).providers["local"]
    assert (shared.share, shared.shared_with) == (0.5, 1)
    model = schedule_model(settings, "local", shared.latency)
    assert shared.estimated_seconds == round(estimate_seconds(20, model), 3)  # its 10 and 10 of the other's
    assert shared.estimated_seconds > alone.estimated_seconds
