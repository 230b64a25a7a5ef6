"""OpenAI's Batch API as a provider mode (providers.md §6): the real engine and the real httpx client
against `wfbatch sim --provider openai` over loopback, a real SQLite file, a real daemon for kill -9."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from tests.openai_images_schema import CREATE_IMAGE_REQUEST
from wfbatch.core.parsing import parse_prompt_bytes
from wfbatch.core.states import Execution, JobState
from wfbatch.engine.ingest import Ingested, ingest
from wfbatch.engine.scheduler import Engine
from wfbatch.home import HomeLayout
from wfbatch.providers.openai.prices import table_price
from wfbatch.settings import Settings, load_settings
from wfbatch.sim import RunningSimulator, SimOptions
from wfbatch.store import Reuse, Store
from wfbatch.store.remote_batches import RemoteBatchStore, Step

TEST_KEY = "sk-test-batch-key-never-shown"
PRICE = table_price("gpt-image-1", "low", "1024x1024")
assert PRICE is not None


def batch_sim(**overrides: Any) -> RunningSimulator:
    values: dict[str, Any] = {
        "provider": "openai",
        "latency": (0.0, 0.0),
        "seed": 7,
        "api_key": TEST_KEY,
        "batch_step": 0.05,
    }
    values.update(overrides)
    return RunningSimulator(SimOptions(**values))


def batch_settings(home: Path, sim: RunningSimulator, **openai: Any) -> Settings:
    values: dict[str, Any] = {
        "api_key": TEST_KEY,
        "base_url": sim.base_url,
        "mode": "batch",
        "batch_poll_interval": 0.05,
        "batch_gather_seconds": 0.0,
        "backoff_initial": 0.05,
        "request_timeout": 5.0,
    }
    values.update(openai)
    return load_settings(home, provider="openai", openai=values)


def shots(count: int, **fields: Any) -> bytes:
    return "\n".join(
        json.dumps({"prompt": f"product shot {i}", "params": {"quality": "low"}, **fields})
        for i in range(count)
    ).encode()


async def enqueue(store: Store, layout: HomeLayout, raw: bytes) -> Ingested:
    return await ingest(
        store, layout, parse_prompt_bytes(raw, "shots.jsonl"), raw, "openai", reuse=Reuse.NEVER
    )


def sim_get(sim: RunningSimulator, path: str) -> httpx.Response:
    return httpx.get(f"{sim.base_url}{path}", headers={"Authorization": f"Bearer {TEST_KEY}"}, timeout=5)


def uploaded_lines(sim: RunningSimulator) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for file_id in sim.state.stats()["batch"]["input_file_ids"]:
        lines += [json.loads(raw) for raw in sim_get(sim, f"/files/{file_id}/content").text.splitlines()]
    return lines


async def test_twenty_prompts_in_batch_mode_half_price(store: Store, layout: HomeLayout, home: Path) -> None:
    raw = shots(20)
    with batch_sim() as sim:
        ingested = await enqueue(store, layout, raw)
        engine = Engine(store, batch_settings(home, sim), layout, batch_ids=[ingested.batch.id])
        reason = await engine.run_until_idle()
        stats = sim.state.stats()
        lines = uploaded_lines(sim)
    assert reason.code == "done", reason
    assert stats["batch"]["uploads"] == 1 and stats["batch"]["batches_created"] == 1
    assert stats["openai"]["generations"] == 20
    assert stats["requests"]["by_route"].get("generations", 0) == 0  # nothing went the direct way
    jobs = await store.list_jobs(batch_id=ingested.batch.id, limit=100)
    assert [job.state for job in jobs] == [JobState.DONE] * 20
    assert sum(job.credits or 0 for job in jobs) == pytest.approx(PRICE / 2 * 20)
    ledger = await store.fetchone("SELECT SUM(credits) AS c FROM ledger WHERE kind = 'charge'")
    assert ledger is not None and ledger["c"] == pytest.approx(PRICE / 2 * 20)
    for job in jobs:
        assert job.file is not None and (Path(ingested.batch.output_dir) / job.file).is_file()
        assert job.reserved is None and job.execution is Execution.FINISHED
    assert len(lines) == 20 and {line["custom_id"] for line in lines} == {job.uid for job in jobs}
    for line in lines:
        assert line["method"] == "POST" and line["url"] == "/v1/images/generations"
        jsonschema.validate(line["body"], CREATE_IMAGE_REQUEST)
    rows = await RemoteBatchStore(store).of_batches([ingested.batch.id])
    assert len(rows) == 1 and rows[0].step is Step.CLOSED and rows[0].remote_id
    assert (rows[0].total, rows[0].completed, rows[0].failed) == (20, 20, 0)


async def test_an_expired_batch_keeps_what_it_finished(store: Store, layout: HomeLayout, home: Path) -> None:
    raw = shots(20)
    with batch_sim(batch_expire_after=12) as sim:
        ingested = await enqueue(store, layout, raw)
        # A gather that waits an hour: the 8 requeued jobs stay queued while the test looks.
        settings = batch_settings(home, sim, batch_gather_seconds=3600.0)
        rows = RemoteBatchStore(store)
        engine = Engine(store, settings, layout, batch_ids=[ingested.batch.id])
        await store.fetchall("UPDATE jobs SET updated_at = updated_at - 7200")  # the first may go
        running = asyncio.create_task(engine.run_until_idle())
        for _ in range(400):
            closed = [row for row in await rows.of_batches([ingested.batch.id]) if row.step is Step.CLOSED]
            if closed:
                break
            await asyncio.sleep(0.025)
        engine.request_stop()
        await running
        stats = sim.state.stats()
    jobs = await store.list_jobs(batch_id=ingested.batch.id, limit=100)
    done = [job for job in jobs if job.state is JobState.DONE]
    queued = [job for job in jobs if job.state is JobState.QUEUED]
    assert (len(done), len(queued)) == (12, 8)
    assert stats["openai"]["generations"] == 12 and stats["batch"]["batches_created"] == 1
    for job in queued:
        assert job.error_message is not None and "expired: openai batch: batch_expired" in job.error_message
        assert job.execution is Execution.NONE and job.reserved is None and job.attempts == 0
    assert sum(job.credits or 0 for job in done) == pytest.approx(PRICE / 2 * 12)
    (row,) = await rows.of_batches([ingested.batch.id])
    assert row.status == "expired" and row.step is Step.CLOSED
