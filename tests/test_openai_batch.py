"""OpenAI's Batch API as a provider mode (providers.md §6): the real engine and the real httpx client
against `wfbatch sim --provider openai` over loopback, a real SQLite file, a real daemon for kill -9."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from tests.daemon_harness import running_daemon
from tests.openai_images_schema import CREATE_IMAGE_REQUEST
from wfbatch.core.parsing import PromptFileError, parse_prompt_bytes
from wfbatch.core.states import Execution, JobState
from wfbatch.engine.intake.acceptance import check_prompts
from wfbatch.engine.intake.ingest import Ingested, ingest
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.engine.planning.plan import make_plan
from wfbatch.home import HomeLayout
from wfbatch.providers.openai.prices import table_price
from wfbatch.settings import Settings, load_settings
from wfbatch.sim import RunningSimulator, SimOptions
from wfbatch.store import Reuse, Store
from wfbatch.store.remote_batches import Step

TEST_KEY = "sk-test-batch-key-never-shown"
_TABLE_PRICE = table_price("gpt-image-1", "low", "1024x1024")
assert _TABLE_PRICE is not None
PRICE: float = _TABLE_PRICE


def batch_sim(clock: Callable[[], float] = time.time, **overrides: Any) -> RunningSimulator:
    values: dict[str, Any] = {
        "provider": "openai",
        "latency": (0.0, 0.0),
        "seed": 7,
        "api_key": TEST_KEY,
        "batch_step": 0.05,
    }
    values.update(overrides)
    return RunningSimulator(SimOptions(**values), clock=clock)


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
    jobs = await store.jobs.list_jobs(batch_id=ingested.batch.id, limit=100)
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
    rows = await store.remote_batches.of_batches([ingested.batch.id])
    assert len(rows) == 1 and rows[0].step is Step.CLOSED and rows[0].remote_id
    assert (rows[0].total, rows[0].completed, rows[0].failed) == (20, 20, 0)


async def test_an_expired_batch_keeps_what_it_finished(store: Store, layout: HomeLayout, home: Path) -> None:
    raw = shots(20)
    with batch_sim(batch_expire_after=12) as sim:
        ingested = await enqueue(store, layout, raw)
        # A gather that waits an hour: the 8 requeued jobs stay queued while the test looks.
        settings = batch_settings(home, sim, batch_gather_seconds=3600.0)
        rows = store.remote_batches
        engine = Engine(store, settings, layout, batch_ids=[ingested.batch.id])
        async with store.transaction() as conn:  # the first may go
            await conn.execute("UPDATE jobs SET updated_at = updated_at - 7200")
        running = asyncio.create_task(engine.run_until_idle())
        for _ in range(400):
            closed = [row for row in await rows.of_batches([ingested.batch.id]) if row.step is Step.CLOSED]
            if closed:
                break
            await asyncio.sleep(0.025)
        engine.request_stop()
        await running
        stats = sim.state.stats()
    jobs = await store.jobs.list_jobs(batch_id=ingested.batch.id, limit=100)
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


async def run_until_closed(
    engine: Engine, store: Store, batch_id: str, *, stop_at: Step = Step.CLOSED
) -> None:
    """Run the engine until the batch's remote batch reaches `stop_at` (bounded), then stop it."""
    rows = store.remote_batches
    running = asyncio.create_task(engine.run_until_idle())
    for _ in range(600):
        found = await rows.of_batches([batch_id])
        if (found and found[-1].step is stop_at) or running.done():
            break
        await asyncio.sleep(0.02)
    engine.request_stop()
    await running


async def test_a_crash_while_creating_finds_the_batch_by_its_tag(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    """The state a crash leaves between `POST /batches` going out and its answer being committed:
    step `creating`, no remote id. The next start looks the batch up by its metadata tag and adopts
    it instead of creating a second one (providers.md §10)."""
    with batch_sim(batch_step=0.3) as sim:
        ingested = await enqueue(store, layout, shots(6))
        settings = batch_settings(home, sim)
        await run_until_closed(
            Engine(store, settings, layout, batch_ids=[ingested.batch.id]),
            store,
            ingested.batch.id,
            stop_at=Step.STARTED,
        )
        (row,) = await store.remote_batches.of_batches([ingested.batch.id])
        assert row.step is Step.STARTED and sim.state.stats()["batch"]["batches_created"] == 1
        async with store.transaction() as conn:
            await conn.execute(
                "UPDATE remote_batches SET step = 'creating', remote_id = NULL, status = NULL WHERE id = ?",
                (row.id,),
            )
            await conn.execute("UPDATE jobs SET state = 'submitting' WHERE remote_batch = ?", (row.id,))
        await run_until_closed(
            Engine(store, settings, layout, batch_ids=[ingested.batch.id]), store, ingested.batch.id
        )
        stats = sim.state.stats()
    assert stats["batch"]["batches_created"] == 1 and stats["batch"]["uploads"] == 1
    jobs = await store.jobs.list_jobs(batch_id=ingested.batch.id, limit=100)
    assert [job.state for job in jobs] == [JobState.DONE] * 6
    (row,) = await store.remote_batches.of_batches([ingested.batch.id])
    assert row.remote_id is not None and row.remote_id.startswith("batch_")


async def test_a_crash_while_uploading_finds_the_file_by_its_name(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    """Step `uploading` with no file id (the upload's answer was lost): the file is found by its
    name, not uploaded again."""
    with batch_sim() as sim:
        ingested = await enqueue(store, layout, shots(4))
        settings = batch_settings(home, sim)
        rows = store.remote_batches
        jobs = await store.jobs.list_jobs(batch_id=ingested.batch.id, limit=100)
        gathered = await rows.gather(
            "openai", ingested.batch.id, "gpt-image-1", "wfbatch-lost-upload", [job.id for job in jobs], 0.0
        )
        assert gathered is not None
        engine = Engine(store, settings, layout, batch_ids=[ingested.batch.id])
        api = (await engine.pool.get("openai")).remote_batches()  # type: ignore[union-attr]
        assert api is not None
        lines = [api.line(job.spec, job.uid) for job in jobs]
        await api.upload("wfbatch-lost-upload", api.encode(lines))  # went through; answer "lost"
        await rows.update(gathered[0].id, step=Step.UPLOADING)
        await run_until_closed(engine, store, ingested.batch.id)
        stats = sim.state.stats()
    assert stats["batch"]["uploads"] == 1 and stats["batch"]["batches_created"] == 1
    jobs = await store.jobs.list_jobs(batch_id=ingested.batch.id, limit=100)
    assert [job.state for job in jobs] == [JobState.DONE] * 4


async def test_every_line_refused_comes_from_the_error_file(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    """A `completed` batch whose every line failed has no output file (`output_file_id: null`):
    the error file says why, per job, with OpenAI's message and request id; nothing is charged."""
    with batch_sim(moderation_marker="forbidden") as sim:
        ingested = await enqueue(store, layout, shots(3, tags=[]).replace(b"product", b"forbidden"))
        await run_until_closed(
            Engine(store, batch_settings(home, sim), layout, batch_ids=[ingested.batch.id]),
            store,
            ingested.batch.id,
        )
    jobs = await store.jobs.list_jobs(batch_id=ingested.batch.id, limit=100)
    assert [job.state for job in jobs] == [JobState.FAILED] * 3
    for job in jobs:
        assert job.error_message is not None and "moderation_blocked" in job.error_message
        assert job.error_request_id is not None and job.error_request_id.startswith("req_")
        assert job.execution is Execution.ENDED and job.reserved is None and not job.credits
    (row,) = await store.remote_batches.of_batches([ingested.batch.id])
    assert row.status == "completed" and row.failed == 3


async def test_canceling_every_job_cancels_the_remote_batch(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with batch_sim(batch_step=30.0) as sim:
        ingested = await enqueue(store, layout, shots(5))
        engine = Engine(store, batch_settings(home, sim), layout, batch_ids=[ingested.batch.id])
        rows = store.remote_batches
        # As the daemon runs it: canceled jobs leave nothing for `run` to wait for, but the daemon
        # settles their remote batch.
        stop = asyncio.Event()
        running = asyncio.create_task(engine.run_forever(stop))
        for _ in range(500):
            found = await rows.of_batches([ingested.batch.id])
            if found and found[0].step is Step.STARTED:
                break
            await asyncio.sleep(0.02)
        ids = [job.id for job in await store.jobs.list_jobs(batch_id=ingested.batch.id, limit=100)]
        await engine.stop_canceled(await store.jobs.cancel_jobs(ids))
        for _ in range(500):
            (row,) = await rows.of_batches([ingested.batch.id])
            if row.step is Step.CLOSED:
                break
            await asyncio.sleep(0.02)
        stop.set()
        await running
        await engine.shutdown()
        stats = sim.state.stats()
    assert stats["batch"]["cancels"] == 1 and stats["openai"]["generations"] == 0
    assert row.status == "cancelled" and row.step is Step.CLOSED
    jobs = await store.jobs.list_jobs(batch_id=ingested.batch.id, limit=100)
    for job in jobs:
        assert job.state is JobState.CANCELED and job.execution is Execution.NONE and job.reserved is None
    ledger = await store.fetchone("SELECT COALESCE(SUM(credits), 0) AS c FROM ledger WHERE kind = 'charge'")
    assert ledger is not None and ledger["c"] == 0


def test_kill_9_after_the_upload_and_after_the_start(tmp_path: Path) -> None:
    """A real daemon, killed after the file id is committed and again after the remote id is: one
    file uploaded, one remote batch, 20 images."""
    total = 20
    with batch_sim(batch_step=0.4, latency=(0.3, 0.3)) as sim:
        env = {
            "WFBATCH_PROVIDER": "openai",
            "WFBATCH_OPENAI__API_KEY": TEST_KEY,
            "WFBATCH_OPENAI__BASE_URL": sim.base_url,
            "WFBATCH_OPENAI__MODE": "batch",
            "WFBATCH_OPENAI__BATCH_POLL_INTERVAL": "0.1",
            "WFBATCH_OPENAI__BATCH_GATHER_SECONDS": "0.2",
            "WFBATCH_OPENAI__BACKOFF_INITIAL": "0.05",
            "WFBATCH_INBOX__STABLE_SECONDS": "0.2",
        }
        with running_daemon(env=env) as daemon:
            db = HomeLayout(daemon.home).db

            def row() -> sqlite3.Row | None:
                with contextlib.closing(sqlite3.connect(db)) as conn:
                    conn.row_factory = sqlite3.Row
                    found: sqlite3.Row | None = conn.execute(
                        "SELECT * FROM remote_batches ORDER BY id LIMIT 1"
                    ).fetchone()
                    return found

            daemon.drop("catalogue.jsonl", shots(total))
            daemon.wait_until(lambda: (found := row()) is not None and found["file_id"], 20, "the upload")
            daemon.kill()
            daemon.start()
            daemon.wait_until(lambda: (found := row()) is not None and found["remote_id"], 20, "the start")
            daemon.kill()
            daemon.start()
            daemon.wait_for_jobs(lambda jobs: jobs["done"] == total, timeout=30)
            (batch,) = daemon.status()["batches"]
        stats = sim.state.stats()
    (remote,) = batch["remote_batches"]  # what `status` and the TUI's batch row show
    assert (remote["status"], remote["completed"], remote["lines"]) == ("completed", total, total)
    assert stats["batch"]["uploads"] == 1 and stats["batch"]["batches_created"] == 1, stats["batch"]
    assert stats["openai"]["generations"] == total


async def test_plan_shows_both_prices_the_saving_and_the_window(store: Store, home: Path) -> None:
    settings = load_settings(home, provider="openai", openai={"api_key": TEST_KEY, "mode": "batch"})
    raw = (
        shots(20, width=1024, height=1024)
        + b"\n"
        + json.dumps({"prompt": "needed today", "mode": "direct", "params": {"quality": "low"}}).encode()
    )
    plan = await make_plan(store, settings, [parse_prompt_bytes(raw, "shots.jsonl")])
    openai = plan.providers["openai"]
    assert openai.batch_jobs == 20 and openai.completion_window == "24h"
    assert openai.batch_cost == pytest.approx(PRICE / 2 * 20)
    assert openai.batch_direct_cost == pytest.approx(PRICE * 20)
    assert plan.estimated_credits == pytest.approx(PRICE / 2 * 20 + PRICE)  # the direct one at full price


def test_batch_mode_needs_a_provider_with_a_batch_api(home: Path) -> None:
    settings = load_settings(home, provider="local")
    raw = json.dumps({"prompt": "a fox", "mode": "batch"}).encode()
    with pytest.raises(PromptFileError, match="mode 'batch' needs a provider with a batch API"):
        check_prompts(raw, "fox.jsonl", settings)


async def test_the_batch_queue_limit_and_the_remote_batch_limit(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with batch_sim() as sim:
        ingested = await enqueue(store, layout, shots(12))
        settings = batch_settings(home, sim, batch_queue_limit=5, max_remote_batches=1)
        reason = await Engine(store, settings, layout, batch_ids=[ingested.batch.id]).run_until_idle()
        stats = sim.state.stats()
    assert reason.code == "done"
    rows = await store.remote_batches.of_batches([ingested.batch.id])
    assert [row.lines for row in rows] == [5, 5, 2] and stats["batch"]["batches_created"] == 3
    for earlier, later in itertools.pairwise(rows):
        assert earlier.closed_at is not None and later.created_at >= earlier.closed_at  # one at a time


def test_wfbatch_run_waits_and_reports_the_remote_batch(tmp_path: Path) -> None:
    """The CLI end to end: `wfbatch run --json` in batch mode exits 0 with 20 images at half price
    and names the remote batch; the key is nowhere in its output."""
    shots_file = tmp_path / "shots.jsonl"
    shots_file.write_bytes(shots(20))
    with batch_sim() as sim:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("WFBATCH_")},
            "WFBATCH_HOME": str(tmp_path / "home"),
            "WFBATCH_PROVIDER": "openai",
            "WFBATCH_OPENAI__API_KEY": TEST_KEY,
            "WFBATCH_OPENAI__BASE_URL": sim.base_url,
            "WFBATCH_OPENAI__MODE": "batch",
            "WFBATCH_OPENAI__BATCH_POLL_INTERVAL": "0.1",
            "WFBATCH_OPENAI__BATCH_GATHER_SECONDS": "0",
        }
        result = subprocess.run(
            [sys.executable, "-m", "wfbatch", "run", str(shots_file), "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        stats = sim.state.stats()
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["done"] == 20 and summary["credits"]["charged"] == pytest.approx(PRICE / 2 * 20)
    (remote,) = summary["remote_batches"]
    assert remote["remote_id"] in stats["batch"]["batches"] and remote["request_counts"]["completed"] == 20
    assert TEST_KEY not in result.stdout + result.stderr


async def test_an_expired_batch_can_send_the_rest_directly(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with batch_sim(batch_expire_after=3) as sim:
        ingested = await enqueue(store, layout, shots(5))
        settings = batch_settings(home, sim, batch_expired_to_direct=True)
        reason = await Engine(store, settings, layout, batch_ids=[ingested.batch.id]).run_until_idle()
        stats = sim.state.stats()
    assert reason.code == "done" and stats["batch"]["batches_created"] == 1
    assert stats["requests"]["by_route"]["generations"] == 2  # the two the batch did not run
    jobs = await store.jobs.list_jobs(batch_id=ingested.batch.id, limit=100)
    assert [job.state for job in jobs] == [JobState.DONE] * 5
    direct = [job for job in jobs if job.spec.mode == "direct"]
    assert len(direct) == 2 and all(job.credits == pytest.approx(PRICE) for job in direct)


class SimClock:
    """The simulator's clock, moved by the test: a remote batch stays where the test left it."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def wait_for(check: Callable[[], Any], what: str, within: float = 30.0) -> None:
    """Poll `check` (an async callable) until it is true; fail after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def charged(store: Store) -> float:
    row = await store.fetchone("SELECT COALESCE(SUM(credits), 0) AS c FROM ledger WHERE kind = 'charge'")
    assert row is not None
    return float(row["c"])


async def exposure(store: Store, batch_id: str) -> float:
    row = await store.fetchone(
        "SELECT COALESCE(SUM(credits), 0) AS c FROM ledger WHERE batch_id = ?", (batch_id,)
    )
    assert row is not None
    return float(row["c"])


async def test_a_retry_after_a_cancel_never_pays_a_line_twice(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    """A budget for 6 lines. The 6 jobs are canceled halfway through their remote batch: 3 lines ran
    and were billed, 3 come back `batch_cancelled`. Retried, the 3 paid jobs are completed from their
    stored results; only the 3 others go into the new remote batch, each reserved under the budget."""
    step = 10.0
    clock = SimClock()
    with batch_sim(clock, batch_step=step) as sim:
        ingested = await enqueue(store, layout, shots(6))
        batch_id = ingested.batch.id
        budget = 6 * PRICE / 2
        await store.batches.set_batch_budget(batch_id, budget)
        engine = Engine(store, batch_settings(home, sim), layout, batch_ids=[batch_id])
        rows = store.remote_batches
        stop = asyncio.Event()
        running = asyncio.create_task(engine.run_forever(stop))

        async def nth_row_at(n: int, step_wanted: Step) -> bool:
            found = await rows.of_batches([batch_id])
            return len(found) >= n and found[n - 1].step is step_wanted

        await wait_for(lambda: nth_row_at(1, Step.STARTED), "the first remote batch to start")
        clock.now += 1.55 * step  # in progress, 3 of its 6 lines run
        ids = [job.id for job in await store.jobs.list_jobs(batch_id=batch_id, limit=100)]
        await engine.stop_canceled(await store.jobs.cancel_jobs(ids))
        await wait_for(lambda: nth_row_at(1, Step.CLOSED), "the canceled remote batch to be settled")
        jobs = await store.jobs.list_jobs(batch_id=batch_id, limit=100)
        paid = {job.uid for job in jobs if job.execution is Execution.FINISHED}
        assert len(paid) == 3 and await charged(store) == pytest.approx(3 * PRICE / 2)

        assert await store.jobs.requeue_for_retry(ids) == ids
        engine.wake()
        await wait_for(lambda: nth_row_at(2, Step.STARTED), "the second remote batch to start")
        clock.now += 3 * step
        await wait_for(lambda: nth_row_at(2, Step.CLOSED), "the second remote batch to end")
        stop.set()
        await running
        await engine.shutdown()
        stats = sim.state.stats()
        second_file = stats["batch"]["input_file_ids"][1]
        resent = [
            json.loads(raw)["custom_id"]
            for raw in sim_get(sim, f"/files/{second_file}/content").text.splitlines()
        ]
    jobs = await store.jobs.list_jobs(batch_id=batch_id, limit=100)
    assert [job.state for job in jobs] == [JobState.DONE] * 6
    assert stats["openai"]["generations"] == 6, "a paid line was sent again"
    assert sorted(resent) == sorted(job.uid for job in jobs if job.uid not in paid)
    assert await charged(store) == pytest.approx(6 * PRICE / 2)
    assert await exposure(store, batch_id) <= budget + 1e-9
    for job in jobs:
        assert job.credits == pytest.approx(PRICE / 2) and job.reserved is None
        assert job.file is not None and (Path(ingested.batch.output_dir) / job.file).is_file()


async def test_a_paid_line_without_a_readable_image_is_booked_and_fails_once(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    """A line answered 200 was made and paid, even when its `b64_json` is not an image, its `data`
    is empty or its PNG does not decode: the charge is booked and the job fails with the reason,
    never sent again silently; the lines after it are recorded all the same."""
    raw = (
        shots(5)
        .replace(b"product shot 1", b"garbled shot 1")
        .replace(b"product shot 2", b"empty shot 2")
        .replace(b"product shot 3", b"broken shot 3")
    )
    hostile = {"batch_not_image_marker": "garbled", "batch_no_image_marker": "empty"}
    with batch_sim(batch_broken_image_marker="broken", **hostile) as sim:
        ingested = await enqueue(store, layout, raw)
        engine = Engine(store, batch_settings(home, sim), layout, batch_ids=[ingested.batch.id])
        await asyncio.wait_for(engine.run_until_idle(), 60)
        stats = sim.state.stats()
    assert stats["batch"]["uploads"] == 1 and stats["batch"]["batches_created"] == 1, stats["batch"]
    assert stats["openai"]["generations"] == 5
    jobs = {job.spec.prompt: job for job in await store.jobs.list_jobs(batch_id=ingested.batch.id, limit=100)}
    assert [jobs[f"product shot {i}"].state for i in (0, 4)] == [JobState.DONE] * 2
    for prompt, why in (
        ("garbled shot 1", "not a PNG, JPEG or WebP"),
        ("empty shot 2", "no image"),
        ("broken shot 3", "cannot be decoded"),
    ):
        job = jobs[prompt]
        assert job.state is JobState.FAILED and job.error_message is not None and why in job.error_message
        assert job.execution is Execution.ENDED and job.reserved is None
        assert job.credits == pytest.approx(PRICE / 2)
    assert await charged(store) == pytest.approx(5 * PRICE / 2)  # every paid line booked
    assert await exposure(store, ingested.batch.id) == pytest.approx(5 * PRICE / 2)  # nothing left reserved


async def test_duplicates_in_a_batch_are_sent_once(store: Store, layout: HomeLayout, home: Path) -> None:
    """The same prompt twice in a file is one line of the remote batch, as it is one request in direct
    mode; the copy is completed from the cache. A later file with the same prompts sends nothing."""
    line = json.dumps({"prompt": "product shot 0", "params": {"quality": "low"}}).encode()
    raw = shots(2) + b"\n" + line
    with batch_sim() as sim:
        first = await enqueue(store, layout, raw)
        await Engine(store, batch_settings(home, sim), layout, batch_ids=[first.batch.id]).run_until_idle()
        second = await enqueue(store, layout, raw)
        await Engine(store, batch_settings(home, sim), layout, batch_ids=[second.batch.id]).run_until_idle()
        stats = sim.state.stats()
        lines = uploaded_lines(sim)
    assert stats["openai"]["generations"] == 2 and len(lines) == 2
    assert stats["batch"]["batches_created"] == 1
    for ingested in (first, second):
        jobs = await store.jobs.list_jobs(batch_id=ingested.batch.id, limit=100)
        assert [job.state for job in jobs] == [JobState.DONE] * 3
    assert await store.counters.cache_hits([first.batch.id]) == 1
    assert await store.counters.cache_hits([second.batch.id]) == 3
    assert await charged(store) == pytest.approx(2 * PRICE / 2)


async def test_a_line_after_a_lost_direct_answer_is_reserved_under_the_budget(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    """A direct request whose answer was lost may have been charged (its job keeps the reservation).
    Sent again in batch mode, that request counts as spent and the line is reserved like any start:
    a budget that fits only the first request holds the line back until it is raised."""
    with batch_sim() as sim:
        sim.state.queue_fault("lost_5xx", route="generations")
        ingested = await enqueue(store, layout, shots(1))
        batch_id = ingested.batch.id
        await store.batches.set_batch_budget(batch_id, PRICE)
        direct = batch_settings(home, sim, mode="direct", max_attempts=1)
        await Engine(store, direct, layout, batch_ids=[batch_id]).run_until_idle()
        (job,) = await store.jobs.list_jobs(batch_id=batch_id, limit=10)
        assert job.state is JobState.FAILED and job.execution is Execution.MAYBE
        assert job.reserved == pytest.approx(PRICE)
        assert await store.jobs.requeue_for_retry([job.id]) == [job.id]
        await Engine(store, batch_settings(home, sim), layout, batch_ids=[batch_id]).run_until_idle()
        held = sim.state.stats()
        (job,) = await store.jobs.list_jobs(batch_id=batch_id, limit=10)
        assert job.state is JobState.QUEUED and job.possible_duplicate_charge is not None
        assert await charged(store) == pytest.approx(PRICE)  # the lost request, counted as spent
        await store.batches.set_batch_budget(batch_id, PRICE + PRICE / 2)
        await Engine(store, batch_settings(home, sim), layout, batch_ids=[batch_id]).run_until_idle()
        stats = sim.state.stats()
    assert held["openai"]["generations"] == 1 and held["batch"]["uploads"] == 0
    assert stats["openai"]["generations"] == 2 and stats["batch"]["uploads"] == 1
    (job,) = await store.jobs.list_jobs(batch_id=batch_id, limit=10)
    assert job.state is JobState.DONE and job.reserved is None
    assert await charged(store) == pytest.approx(PRICE + PRICE / 2)
    assert await exposure(store, batch_id) <= PRICE + PRICE / 2 + 1e-9


async def test_a_paid_line_that_cannot_be_read_back_is_booked_not_sent_again(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    """An output line cut short (not JSON, custom_id and all) names no job, but the batch's counts
    say the line was made: the job no line spoke of counts as charged and fails with the reason,
    instead of going back to the queue and being paid for again."""
    raw = shots(3).replace(b"product shot 1", b"cut shot 1")
    with batch_sim(batch_cut_line_marker="cut") as sim:
        ingested = await enqueue(store, layout, raw)
        engine = Engine(store, batch_settings(home, sim), layout, batch_ids=[ingested.batch.id])
        await asyncio.wait_for(engine.run_until_idle(), 60)
        stats = sim.state.stats()
    assert stats["batch"]["uploads"] == 1 and stats["openai"]["generations"] == 3, stats["batch"]
    jobs = {job.spec.prompt: job for job in await store.jobs.list_jobs(batch_id=ingested.batch.id, limit=10)}
    assert [jobs[f"product shot {i}"].state for i in (0, 2)] == [JobState.DONE] * 2
    cut = jobs["cut shot 1"]
    assert cut.state is JobState.FAILED and cut.error_message is not None
    assert "could not be read back" in cut.error_message
    assert cut.execution is Execution.ENDED and cut.reserved is None
    assert await charged(store) == pytest.approx(3 * PRICE / 2)
    assert await exposure(store, ingested.batch.id) == pytest.approx(3 * PRICE / 2)


async def test_jobs_canceled_while_their_remote_batch_is_created_cancel_it_once_it_exists(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    """The cancel arrives while `POST /v1/batches` is on the wire (no remote id to cancel yet): the
    remote batch is canceled as soon as it exists, before any of its lines runs and is billed."""
    clock = SimClock()  # never moved: the remote batch stays `validating` until it is canceled
    with batch_sim(clock, latency=(1.0, 1.0)) as sim:  # the create answers after a second
        ingested = await enqueue(store, layout, shots(4))
        batch_id = ingested.batch.id
        engine = Engine(store, batch_settings(home, sim), layout, batch_ids=[batch_id])
        rows = store.remote_batches
        stop = asyncio.Event()
        running = asyncio.create_task(engine.run_forever(stop))

        async def at(step: Step) -> bool:
            found = await rows.of_batches([batch_id])
            return bool(found) and found[0].step is step

        await wait_for(lambda: at(Step.CREATING), "the create request to go out")
        ids = [job.id for job in await store.jobs.list_jobs(batch_id=batch_id, limit=10)]
        await engine.stop_canceled(await store.jobs.cancel_jobs(ids))
        await wait_for(lambda: at(Step.CLOSED), "the remote batch to be canceled and settled")
        stop.set()
        await running
        await engine.shutdown()
        stats = sim.state.stats()
    assert stats["batch"]["batches_created"] == 1 and stats["batch"]["cancels"] == 1
    assert stats["openai"]["generations"] == 0
    (row,) = await rows.of_batches([batch_id])
    assert row.status == "cancelled"
    for job in await store.jobs.list_jobs(batch_id=batch_id, limit=10):
        assert job.state is JobState.CANCELED and job.execution is Execution.NONE and job.reserved is None


async def test_a_line_the_server_failed_is_tried_again_as_a_new_reserved_line(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    """A line answered 500 made nothing and cost nothing: its reservation goes back and its retry is
    a new line, reserved again — not a re-send counted as a possible second charge."""
    raw = shots(2).replace(b"product shot 1", b"unlucky shot 1")
    with batch_sim(batch_server_error_marker="unlucky") as sim:
        ingested = await enqueue(store, layout, raw)
        settings = batch_settings(home, sim, max_attempts=2)
        engine = Engine(store, settings, layout, batch_ids=[ingested.batch.id])
        await asyncio.wait_for(engine.run_until_idle(), 60)
        stats = sim.state.stats()
    assert stats["batch"]["uploads"] == 2 and stats["openai"]["generations"] == 1
    jobs = {job.spec.prompt: job for job in await store.jobs.list_jobs(batch_id=ingested.batch.id, limit=10)}
    assert jobs["product shot 0"].state is JobState.DONE
    unlucky = jobs["unlucky shot 1"]
    assert unlucky.state is JobState.FAILED and unlucky.attempts == 2
    assert unlucky.error_message is not None and "server had an error" in unlucky.error_message
    assert unlucky.execution is Execution.NONE and unlucky.reserved is None and not unlucky.credits
    assert unlucky.possible_duplicate_charge is None
    assert await charged(store) == pytest.approx(PRICE / 2)
    assert await exposure(store, ingested.batch.id) == pytest.approx(PRICE / 2)


async def test_a_run_does_not_wait_for_an_image_in_a_remote_batch_it_does_not_drive(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    """`wfbatch run` drives only its own batches: the same image in another batch's live remote
    batch (left by an earlier process, driven by nobody here) does not hold its line back."""
    with batch_sim() as sim:
        other = await enqueue(store, layout, shots(1))
        (elsewhere,) = await store.jobs.list_jobs(batch_id=other.batch.id, limit=10)
        rows = store.remote_batches
        assert await rows.gather(
            "openai", other.batch.id, "gpt-image-1", "wfbatch-other", [elsewhere.id], 0.0
        )
        mine = await enqueue(store, layout, shots(1))
        engine = Engine(store, batch_settings(home, sim), layout, batch_ids=[mine.batch.id])
        reason = await asyncio.wait_for(engine.run_until_idle(), 60)
        stats = sim.state.stats()
    assert reason.code == "done" and stats["openai"]["generations"] == 1
    (job,) = await store.jobs.list_jobs(batch_id=mine.batch.id, limit=10)
    assert job.state is JobState.DONE
