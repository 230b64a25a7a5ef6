"""The engine with the local provider, a real SQLite file and real output folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image

from wfbatch.core.parsing import parse_prompt_bytes
from wfbatch.core.states import JobState
from wfbatch.engine.intake.ingest import Ingested, ingest
from wfbatch.engine.loop.scheduler import Engine, StopReason
from wfbatch.home import HomeLayout
from wfbatch.outputs import read_embedded_metadata, read_manifest
from wfbatch.settings import Settings
from wfbatch.store import Reuse, Store


def jsonl(*entries: dict[str, Any]) -> bytes:
    return "\n".join(json.dumps({"width": 64, "height": 64, **e}) for e in entries).encode()


async def enqueue(store: Store, layout: HomeLayout, raw: bytes, name: str = "batch.jsonl") -> Ingested:
    return await ingest(store, layout, parse_prompt_bytes(raw, name), raw, "local", reuse=Reuse.NEVER)


async def run(
    store: Store, settings: Settings, layout: HomeLayout, batch_ids: list[str]
) -> tuple[StopReason, Engine]:
    engine = Engine(store, settings, layout, batch_ids=batch_ids)
    reason = await engine.run_until_idle()
    return reason, engine


async def test_a_batch_runs_to_done_with_files_manifest_and_metadata(
    store: Store, layout: HomeLayout, make_settings: Any
) -> None:
    raw = jsonl(
        {"prompt": "a red bicycle"},
        {"prompt": "a teapot", "format": "jpeg"},
        {"prompt": "a fox", "format": "webp"},
    )
    batch = (await enqueue(store, layout, raw)).batch
    reason, engine = await run(store, make_settings(), layout, [batch.id])
    assert reason.code == "done"
    assert engine.pool.requests_sent() == 3
    manifest = read_manifest(Path(batch.output_dir))
    jobs = await store.jobs.jobs_for_batch(batch.id)
    assert [e.status for e in manifest.entries] == ["done"] * 3
    for entry, job in zip(manifest.entries, jobs, strict=True):
        assert entry.file == job.file and entry.file is not None
        path = Path(batch.output_dir) / entry.file
        with Image.open(path) as image:
            assert image.size == (64, 64)
            assert image.format == {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[entry.format]
        meta = read_embedded_metadata(path)
        assert meta["prompt"] == job.spec.prompt
        assert meta["seed"] == job.spec.seed  # typed as the manifest types it
        assert meta["cache_key"] == job.cache_key
    assert (Path(batch.output_dir) / "contact-sheet.png").exists()


async def test_cache_serves_repeats_and_duplicates_are_made_once(
    store: Store, layout: HomeLayout, make_settings: Any
) -> None:
    raw = jsonl({"prompt": "a lighthouse"}, {"prompt": "a  lighthouse "}, {"prompt": "a barn"})
    first = (await enqueue(store, layout, raw)).batch
    _, engine = await run(store, make_settings(), layout, [first.id])
    assert engine.pool.requests_sent() == 2  # the duplicate was generated once
    assert await store.counters.cache_hits([first.id]) == 1
    second = (await enqueue(store, layout, raw)).batch
    reason, engine = await run(store, make_settings(), layout, [second.id])
    assert reason.code == "done"
    assert engine.pool.requests_sent() == 0
    assert await store.counters.cache_hits([second.id]) == 3


async def test_a_batch_can_opt_out_of_the_cache(store: Store, layout: HomeLayout, make_settings: Any) -> None:
    spec = {
        "name": "fresh",
        "cache": False,
        "defaults": {"width": 64, "height": 64},
        "prompts": ["same prompt", "same prompt"],
    }
    raw = json.dumps(spec).encode()
    await enqueue(store, layout, raw, "fresh.json")
    again = await ingest(
        store, layout, parse_prompt_bytes(raw, "fresh.json"), raw, "local", reuse=Reuse.NEVER
    )
    _, engine = await run(store, make_settings(), layout, [again.batch.id])
    assert engine.pool.requests_sent() == 2


async def test_permanent_errors_fail_at_once_with_the_providers_words(
    store: Store, layout: HomeLayout, make_settings: Any
) -> None:
    batch = (await enqueue(store, layout, jsonl({"prompt": "fine"}, {"prompt": "please FAILME"}))).batch
    settings = make_settings(local={"permanent_fail_marker": "FAILME"})
    reason, _ = await run(store, settings, layout, [batch.id])
    assert reason.code == "done"
    failed = await store.jobs.list_jobs(states=[JobState.FAILED])
    assert len(failed) == 1
    job = failed[0]
    assert job.attempts == 1
    assert job.error_status == 422
    assert job.error_message is not None and "FAILME" in job.error_message
    assert job.error_request_id is not None and job.error_request_id.startswith("local-")
    manifest = read_manifest(Path(batch.output_dir))
    failed_entry = next(e for e in manifest.entries if e.status == "failed")
    assert failed_entry.error is not None and failed_entry.error.request_id == job.error_request_id


async def test_transient_errors_are_retried_until_done(
    store: Store, layout: HomeLayout, make_settings: Any
) -> None:
    batch = (await enqueue(store, layout, jsonl(*({"prompt": f"p{i}"} for i in range(12))))).batch
    settings = make_settings(
        local={"fail_rate": 0.5, "max_attempts": 40, "backoff_initial": 0.01, "backoff_max": 0.05}
    )
    reason, engine = await run(store, settings, layout, [batch.id])
    assert reason.code == "done"
    jobs = await store.jobs.jobs_for_batch(batch.id)
    assert all(j.state is JobState.DONE for j in jobs)
    assert engine.pool.requests_sent() > 12  # some renders failed and were retried
    outcomes = [a.outcome for j in jobs for a in await store.jobs.attempts_for(j.id)]
    assert "transient" in outcomes


async def test_attempts_run_out_into_failed(store: Store, layout: HomeLayout, make_settings: Any) -> None:
    batch = (await enqueue(store, layout, jsonl({"prompt": "unlucky"}))).batch
    settings = make_settings(local={"fail_rate": 1.0, "max_attempts": 3, "backoff_initial": 0.01})
    await run(store, settings, layout, [batch.id])
    job = (await store.jobs.jobs_for_batch(batch.id))[0]
    assert job.state is JobState.FAILED
    assert job.attempts == 3
    assert job.error_message is not None and "gave up after 3 attempts" in job.error_message


async def test_jobs_left_in_flight_by_a_crash_are_resumed(
    store: Store, layout: HomeLayout, make_settings: Any
) -> None:
    batch = (await enqueue(store, layout, jsonl({"prompt": "interrupted"}, {"prompt": "waiting"}))).batch
    first = (await store.jobs.jobs_for_batch(batch.id))[0]
    # As a killed process leaves it: the start was (maybe) sent, nothing recorded after.
    await store.jobs.transition(first.id, [JobState.QUEUED], JobState.SUBMITTING, attempts=1)
    reason, _ = await run(store, make_settings(), layout, [batch.id])
    assert reason.code == "done"
    resumed = await store.jobs.get_job(first.id)
    assert resumed is not None and resumed.state is JobState.DONE
    assert resumed.attempts == 1  # the re-send is the same attempt, with the same key


async def test_pauses_stop_a_one_shot_run_with_the_reason(
    store: Store, layout: HomeLayout, make_settings: Any
) -> None:
    batch = (await enqueue(store, layout, jsonl({"prompt": "x"}))).batch
    await store.pauses.set_pause("global", "maintenance")
    reason, _ = await run(store, make_settings(), layout, [batch.id])
    assert reason.code == "paused" and "maintenance" in reason.message
    await store.pauses.clear_pause("global")
    await store.batches.set_batch_paused(batch.id, True)
    reason, _ = await run(store, make_settings(), layout, [batch.id])
    assert reason.code == "paused" and batch.id in reason.message
    assert (await store.counters.counts([batch.id]))["queued"] == 1


async def test_a_misconfigured_provider_pauses_with_the_reason(
    store: Store, layout: HomeLayout, make_settings: Any
) -> None:
    raw = jsonl({"prompt": "x", "provider": "wireflow"})
    batch = (await enqueue(store, layout, raw)).batch
    reason, _ = await run(store, make_settings(), layout, [batch.id])
    assert reason.code == "paused"
    assert "WFBATCH_WIREFLOW__API_KEY" in reason.message
