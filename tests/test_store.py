"""The store: SQLite-specific tests on `store` (its file, its transactions); tests that use only
`StoreApi` take `any_store` and run against every backend, as tests/test_store_contract.py does."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from tests.deadlines import patience
from wfbatch.core.models import JobSpec
from wfbatch.core.states import Execution, IllegalTransition, JobState
from wfbatch.store import BatchRow, NewJob, Notice, OutcomeRecord, Store, StoreApi
from wfbatch.store.schema import SCHEMA_VERSION


def make_batch(batch_id: str = "b1", content_hash: str = "h1") -> BatchRow:
    return BatchRow(
        id=batch_id,
        name="n",
        source_name="n.txt",
        content_hash=content_hash,
        provider="local",
        cache_enabled=True,
        budget=None,
        output_dir="/tmp/out",
        paused=False,
        created_at=time.time(),
    )


def make_jobs(count: int, prefix: str = "u") -> list[NewJob]:
    return [
        NewJob(
            uid=f"{prefix}{i}",
            idx=i + 1,
            line=i + 1,
            user_id=None,
            spec=JobSpec("local", f"prompt {i}", None, None, 64, 64, i, 0),
            tags=["t"],
            cache_key=f"k{i}",
            priority=0,
        )
        for i in range(count)
    ]


async def test_schema_version_and_wal(store: Store) -> None:
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


async def test_batch_and_jobs_in_one_transaction(store: Store) -> None:
    await store.batches.insert_batch(make_batch(), make_jobs(3))
    assert (await store.counters.counts())["queued"] == 3
    # A duplicate uid makes the whole insert fail: no batch row, no partial jobs.
    with pytest.raises(sqlite3.IntegrityError):
        await store.batches.insert_batch(make_batch("b2", "h2"), [*make_jobs(2, "v"), *make_jobs(1, "v")])
    assert await store.batches.get_batch("b2") is None
    assert sum((await store.counters.counts()).values()) == 3


async def test_reads_never_see_another_coroutines_transaction_half_done(store: Store) -> None:
    await store.batches.insert_batch(make_batch(), make_jobs(2))
    job_ids = [job.id for job in await store.jobs.jobs_for_batch("b1")]
    halfway = asyncio.Event()
    finish = asyncio.Event()

    async def two_step_write() -> None:
        async with store.transaction() as conn:
            await conn.execute("UPDATE jobs SET state = 'canceled' WHERE id = ?", (job_ids[0],))
            halfway.set()
            await finish.wait()  # the second half of the change is not written yet
            await conn.execute("UPDATE jobs SET state = 'canceled' WHERE id = ?", (job_ids[1],))

    writing = asyncio.create_task(two_step_write())
    await asyncio.wait_for(halfway.wait(), patience(5))
    try:
        assert (await store.counters.counts(["b1"]))["queued"] == 2  # the state last committed, not 1
        assert [job.state for job in await store.jobs.jobs_for_batch("b1")] == [JobState.QUEUED] * 2
    finally:
        finish.set()
        await asyncio.wait_for(writing, patience(5))
    assert (await store.counters.counts(["b1"]))["canceled"] == 2


async def test_transitions_follow_the_state_machine(any_store: StoreApi) -> None:
    await any_store.batches.insert_batch(make_batch(), make_jobs(1))
    job = (await any_store.jobs.list_jobs())[0]
    assert await any_store.jobs.transition(job.id, [JobState.QUEUED], JobState.SUBMITTING)
    # Conditional: a second identical move finds the job no longer queued.
    assert not await any_store.jobs.transition(job.id, [JobState.QUEUED], JobState.SUBMITTING)
    with pytest.raises(IllegalTransition):
        await any_store.jobs.transition(job.id, [JobState.DONE], JobState.RUNNING)
    assert await any_store.jobs.transition(
        job.id, [JobState.SUBMITTING], JobState.FAILED, error_message="boom", execution=Execution.ENDED
    )
    retried = await any_store.jobs.requeue_for_retry([job.id])
    assert retried == [job.id]
    again = await any_store.jobs.get_job(job.id)
    assert again is not None
    assert again.state is JobState.QUEUED
    assert again.generation == 1  # the execution ended without an image: a new key for a retry by hand
    assert again.execution is Execution.NONE
    assert again.error_message is None


async def test_a_retry_by_hand_resumes_an_execution_that_may_still_run(any_store: StoreApi) -> None:
    """A failed job whose execution may exist (a lost answer, max_run_seconds) keeps its key and
    remote id on retry: the engine polls it first instead of paying for a second one."""
    await any_store.batches.insert_batch(make_batch(), make_jobs(2))
    lost, outlived = await any_store.jobs.list_jobs()
    for job, remote_id in ((lost, None), (outlived, "exec-7")):
        sent = Execution.MAYBE
        assert await any_store.jobs.transition(job.id, [JobState.QUEUED], JobState.SUBMITTING, execution=sent)
        failed = JobState.FAILED
        moved = await any_store.jobs.transition(job.id, [JobState.SUBMITTING], failed, remote_id=remote_id)
        assert moved
    assert await any_store.jobs.requeue_for_retry([lost.id, outlived.id]) == [lost.id, outlived.id]
    for job, remote_id in ((lost, None), (outlived, "exec-7")):
        again = await any_store.jobs.get_job(job.id)
        assert again is not None
        assert (again.state, again.generation, again.remote_id) == (JobState.QUEUED, 0, remote_id)
        assert again.execution is Execution.MAYBE


async def test_list_jobs_pages_by_cursor_and_filters(any_store: StoreApi) -> None:
    await any_store.batches.insert_batch(make_batch(), make_jobs(25))
    seen: list[int] = []
    after = 0
    for _ in range(10):
        page = await any_store.jobs.list_jobs(after_id=after, limit=10)
        if not page:
            break
        seen.extend(j.id for j in page)
        after = page[-1].id
    assert len(seen) == 25 == len(set(seen))
    found = await any_store.jobs.list_jobs(text="prompt 1")
    assert [j.spec.prompt for j in found][:2] == ["prompt 1", "prompt 10"]
    assert await any_store.jobs.list_jobs(text="100%") == []


async def test_schema_from_the_future_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="Upgrade wfbatch"):
        await Store.open(path)


async def test_a_failure_notice_is_queued_with_the_move_or_not_at_all(any_store: StoreApi) -> None:
    # The `job.failed` notice goes into the outbox in the transaction that fails the job: a crash
    # after the move cannot lose it, and a job moved elsewhere first (canceled) is not told as failed.
    await any_store.batches.insert_batch(make_batch(), make_jobs(2))
    first, second = await any_store.jobs.list_jobs()
    for job in (first, second):
        assert await any_store.jobs.transition(job.id, [JobState.QUEUED], JobState.SUBMITTING)
    assert await any_store.jobs.transition(second.id, [JobState.SUBMITTING], JobState.CANCELED)

    def failing(job_id: int) -> OutcomeRecord:
        notice = Notice(f"job.failed:{job_id}", "job.failed", {"job_id": job_id})
        return OutcomeRecord(target=JobState.FAILED, fields={"error_message": "boom"}, notice=notice)

    assert await any_store.jobs.record_outcome(first.id, failing(first.id))
    assert not await any_store.jobs.record_outcome(second.id, failing(second.id))
    due = await any_store.outbox.due_notifications(time.time(), 10)
    assert [(row.key, row.type) for row in due] == [(f"job.failed:{first.id}", "job.failed")]


def test_the_store_package_exports_the_interface_and_one_backend() -> None:
    """What outside code may import from the store (an import-linter contract forbids the
    backend's own modules): the Protocols, the value types, and `Store`, the SQLite backend."""
    import wfbatch.store

    protocols = {name for name in wfbatch.store.__all__ if name.endswith("Api")}
    assert protocols == {
        "StoreApi",
        "JobsApi",
        "BatchesApi",
        "CountersApi",
        "DraftsApi",
        "LedgerApi",
        "CacheApi",
        "PausesApi",
        "OutboxApi",
        "RemoteBatchesApi",
    }
    assert {name for name in dir(StoreApi) if not name.startswith("_")} == {
        "jobs",
        "batches",
        "counters",
        "drafts",
        "ledger",
        "cache",
        "pauses",
        "outbox",
        "remote_batches",
        "close",
        "probe_write",
    }
    assert all(hasattr(wfbatch.store, name) for name in wfbatch.store.__all__)
