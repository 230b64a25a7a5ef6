"""The output writer keeps each batch's manifest in step with the database: a write that does not
finish (a stop cancels the periodic flush mid-way) leaves the batch to be written again."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.deadlines import patience
from tests.engine_sim import enqueue, prompts
from tests.test_store import make_jobs
from tests.test_store_contract import batch_row
from wfbatch.engine.loop.writer import OutputWriter, sheet_label
from wfbatch.home import HomeLayout
from wfbatch.store import BatchRow, JobRow, Store


async def test_a_flush_cancelled_mid_write_leaves_the_batch_to_the_next_flush(
    store: Store, layout: HomeLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = (await enqueue(store, layout, prompts(2))).batch
    first = (await store.jobs.jobs_for_batch(batch.id))[0]
    await store.jobs.cancel_jobs([first.id])  # a change the manifest has yet to show
    writer = OutputWriter(store, lambda name: name)
    writer.mark_dirty(batch.id)
    reading = asyncio.Event()
    read_jobs = store.jobs.jobs_for_batch

    async def slow_read(batch_id: str) -> list[JobRow]:
        reading.set()
        await asyncio.sleep(30)
        return await read_jobs(batch_id)

    monkeypatch.setattr(store.jobs, "jobs_for_batch", slow_read)
    flushing = asyncio.create_task(writer.flush(force=True))
    await asyncio.wait_for(reading.wait(), patience(5))
    flushing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flushing
    manifest = Path(batch.output_dir) / "manifest.json"
    assert "canceled" not in manifest.read_text()

    monkeypatch.setattr(store.jobs, "jobs_for_batch", read_jobs)
    await writer.flush(force=True)  # the one a clean stop makes
    entries = json.loads(manifest.read_text())["entries"]
    assert [entry["status"] for entry in entries] == ["canceled", "queued"]


async def test_a_finished_hook_cut_short_is_called_again_at_the_next_write(
    store: Store, layout: HomeLayout
) -> None:
    batch = (await enqueue(store, layout, prompts(1))).batch
    job = (await store.jobs.jobs_for_batch(batch.id))[0]
    await store.jobs.cancel_jobs([job.id])
    writer = OutputWriter(store, lambda name: name)
    calls: list[str] = []

    async def hook(finished: BatchRow, counts: dict[str, int]) -> None:
        calls.append(finished.id)
        if len(calls) == 1:
            raise RuntimeError("the disk went away")

    writer.finished_hooks.append(hook)
    writer.mark_dirty(batch.id)
    with pytest.raises(RuntimeError):
        await writer.flush(force=True)
    await writer.flush(force=True)  # still dirty: written again, and the hook told again
    assert calls == [batch.id, batch.id]


async def test_a_contact_sheet_label_names_the_prompt_beside_the_index(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "w.db")
    try:
        await store.batches.insert_batch(batch_row(), make_jobs(2))
        first, second = await store.jobs.jobs_for_batch("b1")
    finally:
        await store.close()
    assert sheet_label(first) == "1: prompt 0"
    assert sheet_label(second) == "2: prompt 1"
