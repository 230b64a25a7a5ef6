"""A batch's `not_before` (a spec field, `--at` on submit and run): accepted and counted now, started
then. The engine runs on a clock the test moves; start times are the ones the store recorded."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Sequence
from typing import Any

import pytest

from tests.daemon_harness import jsonl, running_daemon
from tests.deadlines import patience
from wfbatch.core.parsing import PromptFileError, parse_prompt_bytes
from wfbatch.core.when import BadMoment, parse_at
from wfbatch.engine.clock import SystemClock
from wfbatch.engine.intake.ingest import ingest
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.home import HomeLayout
from wfbatch.store import BatchRow, Reuse, Store


class MovedClock(SystemClock):
    """The system's clock, moved on by hand: `wall()` is what the engine calls the time."""

    def __init__(self) -> None:
        self.offset = 0.0

    def wall(self) -> float:
        return time.time() + self.offset


def spec(**fields: Any) -> bytes:
    return json.dumps({"name": "later", "defaults": {"width": 32, "height": 32},
                       "prompts": ["one", "two", "three"], **fields}).encode()


def test_at_is_the_next_such_local_time_or_an_iso_moment() -> None:
    now = dt.datetime(2026, 12, 7, 23, 30).astimezone()
    assert parse_at("02:00", now) == dt.datetime(2026, 12, 8, 2, 0).astimezone()
    assert parse_at("23:45", now) == dt.datetime(2026, 12, 7, 23, 45).astimezone()
    moment = parse_at("2026-12-08T02:00:00+01:00", now)
    assert moment.utcoffset() == dt.timedelta(hours=1) and moment.hour == 2
    with pytest.raises(BadMoment, match="HH:MM"):
        parse_at("2am", now)
    with pytest.raises(BadMoment, match="no time of day"):
        parse_at("25:00", now)


def test_a_bad_not_before_rejects_the_file_naming_its_line() -> None:
    with pytest.raises(PromptFileError) as caught:
        parse_prompt_bytes(b'{"not_before": "tomorrow",\n "prompts": ["x"]}', "later.json")
    report = caught.value.report()
    assert "later.json:1" in report and "not_before" in report and "ISO 8601" in report
    parsed = parse_prompt_bytes(spec(not_before="2026-12-08T02:00:00+01:00", priority=3, weight=2), "s.json")
    assert parsed.not_before == dt.datetime(2026, 12, 8, 1, 0, tzinfo=dt.UTC).timestamp()
    assert (parsed.priority, parsed.weight) == (3, 2.0)


async def test_a_batch_30_s_ahead_starts_nothing_before_its_time(
    store: Store, layout: HomeLayout, make_settings: Any
) -> None:
    clock = MovedClock()
    not_before = clock.wall() + 30
    raw = spec(not_before=dt.datetime.fromtimestamp(not_before, dt.UTC).isoformat())
    batch = (await ingest(store, layout, parse_prompt_bytes(raw, "later.json"), raw, "local",
                          reuse=Reuse.NEVER)).batch
    assert batch.not_before == pytest.approx(not_before, abs=1e-3)
    assert (await store.counters.counts([batch.id]))["queued"] == 3  # counted now

    # A seam on the store's public call: the engine asked which batches may start, and heard none.
    looked_early = asyncio.Event()
    ready_batches = store.jobs.ready_batches

    async def spied(provider: str, now: float, batch_ids: Sequence[str] | None = None) -> list[BatchRow]:
        found = await ready_batches(provider, now, batch_ids)
        if now < not_before:
            assert not found
            looked_early.set()
        return found

    store.jobs.ready_batches = spied  # type: ignore[method-assign]
    engine = Engine(store, make_settings(), layout, clock=clock, batch_ids=[batch.id])
    running = asyncio.create_task(engine.run_until_idle())
    await asyncio.wait_for(looked_early.wait(), patience())
    assert not running.done()  # waiting for its time, not finished and not stopped as held
    clock.offset += 30
    engine.wake()
    reason = await asyncio.wait_for(running, patience())
    assert reason.code == "done", reason
    jobs = await store.jobs.jobs_for_batch(batch.id)
    assert all(job.started_at is not None and job.started_at >= not_before for job in jobs)


def test_submit_at_shows_the_batch_scheduled_with_its_time() -> None:
    later = (dt.datetime.now().astimezone() + dt.timedelta(hours=2)).replace(microsecond=0)
    with running_daemon() as daemon:
        path = daemon.home / "later.jsonl"
        path.write_text(jsonl("a fox", "a cat"))
        result = daemon.cli("submit", str(path), "--at", later.isoformat())
        assert result.exit_code == 0, result.output
        batch = daemon.wait_until(lambda: daemon.status()["batches"], what="the batch")[0]
        assert dt.datetime.fromisoformat(batch["not_before"]) == later
        assert batch["counts"]["queued"] == 2 and batch["share"] is None
        text = daemon.cli("status", columns=120).output
        assert f"scheduled {later.strftime('%H:%M')}" in text, text
        bad = daemon.cli("submit", str(path), "--at", "soon")
        assert bad.exit_code == 2 and "HH:MM" in bad.output
