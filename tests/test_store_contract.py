"""The store's contract: what every backend of `StoreApi` must do, whatever its database.

Every test here takes `any_store` (tests/conftest.py), parametrized by backend, and touches the
store only through `StoreApi`: no SQL, no connection. A new backend joins by adding its name to
`STORE_BACKENDS` there; these tests then run against it unchanged."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from tests.test_store import make_jobs
from wfbatch.core.states import (
    ALLOWED_TRANSITIONS,
    UNFINISHED_STATES,
    Execution,
    IllegalTransition,
    JobState,
)
from wfbatch.store import (
    CLEARED_ERROR,
    ERROR_COLUMNS,
    BatchRow,
    JobRow,
    OutcomeRecord,
    Reuse,
    StoreApi,
)
from wfbatch.store.ledger import ledger_day


def batch_row(batch_id: str = "b1", content_hash: str = "h1", *, budget: float | None = None) -> BatchRow:
    return BatchRow(
        id=batch_id,
        name="n",
        source_name="n.txt",
        content_hash=content_hash,
        provider="local",
        cache_enabled=True,
        budget=budget,
        output_dir=f"/tmp/out-{batch_id}",
        paused=False,
        created_at=time.time(),
    )


# A path through the table from `queued` to each state, moved by `transition` (so the moves are
# themselves the table's): where a job is put to test a move out of that state.
_PATH_TO: dict[JobState, list[JobState]] = {
    JobState.QUEUED: [],
    JobState.SUBMITTING: [JobState.SUBMITTING],
    JobState.RUNNING: [JobState.SUBMITTING, JobState.RUNNING],
    JobState.RETRYING: [JobState.RETRYING],
    JobState.DONE: [JobState.DONE],
    JobState.FAILED: [JobState.FAILED],
    JobState.CANCELED: [JobState.CANCELED],
}


async def one_job_in_each_state(
    store: StoreApi, *, next_attempt_at: float | None = None
) -> dict[JobState, int]:
    """A batch with one job in every state; state → job id."""
    await store.batches.insert_batch(batch_row(), make_jobs(len(JobState)))
    jobs = await store.jobs.jobs_for_batch("b1")
    placed: dict[JobState, int] = {}
    for state, job in zip(JobState, jobs, strict=True):
        current = JobState.QUEUED
        for step in _PATH_TO[state]:
            fields = {"next_attempt_at": next_attempt_at} if step is JobState.RETRYING else {}
            assert await store.jobs.transition(job.id, [current], step, **fields)
            current = step
        placed[state] = job.id
    return placed


async def states_of(store: StoreApi, placed: dict[JobState, int]) -> dict[JobState, JobState]:
    """Where each job of `one_job_in_each_state` is now, by the state it was put in."""
    found: dict[JobState, JobState] = {}
    for state, job_id in placed.items():
        job = await store.jobs.get_job(job_id)
        assert job is not None
        found[state] = job.state
    return found


def moved_by_table(target: JobState, among: frozenset[JobState] | tuple[JobState, ...]) -> set[JobState]:
    return {state for state in among if target in ALLOWED_TRANSITIONS[state]}


# -- batches ----------------------------------------------------------------------------------


async def test_a_batch_is_inserted_with_all_its_jobs(any_store: StoreApi) -> None:
    assert await any_store.batches.insert_batch(batch_row(), make_jobs(3)) is None
    assert (await any_store.counters.counts())["queued"] == 3
    assert [job.idx for job in await any_store.jobs.jobs_for_batch("b1")] == [1, 2, 3]
    batch = await any_store.batches.get_batch("b1")
    assert batch is not None
    assert batch.content_hash == "h1"


async def test_the_same_content_sent_twice_at_once_makes_one_batch(any_store: StoreApi) -> None:
    first, second = await asyncio.gather(
        any_store.batches.insert_batch(batch_row("b1"), make_jobs(2, "x"), reuse=Reuse.ANY),
        any_store.batches.insert_batch(batch_row("b2"), make_jobs(2, "y"), reuse=Reuse.ANY),
    )
    inserted = [found for found in (first, second) if found is None]
    returned = [found for found in (first, second) if found is not None]
    assert len(inserted) == 1 and len(returned) == 1
    assert sum((await any_store.counters.counts()).values()) == 2
    assert await any_store.batches.batch_ids_with_content("h1", "n.txt") == {returned[0].id}


async def test_pending_reviews_counts_done_images_not_yet_reviewed(any_store: StoreApi) -> None:
    placed = await one_job_in_each_state(any_store)
    assert await any_store.counters.pending_reviews() == 1  # only the done one: the rest made nothing
    await any_store.outbox.review(placed[JobState.DONE], "approved", "approved/1.png", None, deliver=False)
    assert await any_store.counters.pending_reviews() == 0


# -- jobs: every move follows the transition table ----------------------------------------------


async def test_a_transition_is_conditional_and_checked_against_the_table(any_store: StoreApi) -> None:
    await any_store.batches.insert_batch(batch_row(), make_jobs(1))
    (job,) = await any_store.jobs.jobs_for_batch("b1")
    assert await any_store.jobs.transition(job.id, [JobState.QUEUED], JobState.SUBMITTING)
    assert not await any_store.jobs.transition(job.id, [JobState.QUEUED], JobState.SUBMITTING)
    with pytest.raises(IllegalTransition):
        await any_store.jobs.transition(job.id, [JobState.DONE], JobState.RUNNING)


async def test_promote_due_retries_moves_only_what_the_table_allows(any_store: StoreApi) -> None:
    now = time.time()
    placed = await one_job_in_each_state(any_store, next_attempt_at=now - 1)
    assert await any_store.jobs.promote_due_retries(now) == 1
    after = await states_of(any_store, placed)
    assert {s for s in placed if after[s] is not s} == moved_by_table(JobState.QUEUED, (JobState.RETRYING,))
    assert after[JobState.RETRYING] is JobState.QUEUED


async def test_promote_due_retries_waits_for_the_time(any_store: StoreApi) -> None:
    now = time.time()
    placed = await one_job_in_each_state(any_store, next_attempt_at=now + 60)
    assert await any_store.jobs.promote_due_retries(now) == 0
    assert (await states_of(any_store, placed))[JobState.RETRYING] is JobState.RETRYING
    assert await any_store.jobs.next_retry_at() == pytest.approx(now + 60)


async def test_cancel_moves_only_what_the_table_allows(any_store: StoreApi) -> None:
    placed = await one_job_in_each_state(any_store)
    canceled = await any_store.jobs.cancel_jobs(list(placed.values()))
    allowed = moved_by_table(JobState.CANCELED, UNFINISHED_STATES)
    assert sorted(canceled) == sorted(placed[s] for s in allowed)
    after = await states_of(any_store, placed)
    assert {s for s in placed if after[s] is not s} == allowed
    assert all(after[s] is JobState.CANCELED for s in allowed)


async def test_a_retry_by_hand_moves_only_what_the_table_allows(any_store: StoreApi) -> None:
    placed = await one_job_in_each_state(any_store)
    retried = await any_store.jobs.requeue_for_retry(list(placed.values()))
    allowed = moved_by_table(JobState.QUEUED, (JobState.FAILED, JobState.CANCELED))
    assert sorted(retried) == sorted(placed[s] for s in allowed)
    after = await states_of(any_store, placed)
    assert {s for s in placed if after[s] is not s} == allowed
    assert all(after[s] is JobState.QUEUED for s in allowed)


async def test_a_retry_by_hand_clears_the_error_and_resets_the_attempts(any_store: StoreApi) -> None:
    await any_store.batches.insert_batch(batch_row(), make_jobs(1))
    (job,) = await any_store.jobs.jobs_for_batch("b1")
    assert await any_store.jobs.transition(job.id, [JobState.QUEUED], JobState.SUBMITTING, attempts=1)
    failed = await any_store.jobs.transition(
        job.id,
        [JobState.SUBMITTING],
        JobState.FAILED,
        error_class="permanent",
        error_status=422,
        error_message="bad prompt",
        error_request_id="req-1",
        execution=Execution.ENDED,
    )
    assert failed
    assert await any_store.jobs.requeue_for_retry([job.id]) == [job.id]
    again = await any_store.jobs.get_job(job.id)
    assert again is not None
    assert (again.state, again.attempts, again.generation) == (JobState.QUEUED, 0, 1)
    errors = (again.error_class, again.error_status, again.error_message, again.error_request_id)
    assert errors == (None, None, None, None)


async def test_cleared_error_is_every_error_column_reset(any_store: StoreApi) -> None:
    error_fields = {field.name for field in dataclasses.fields(JobRow) if field.name.startswith("error_")}
    assert set(ERROR_COLUMNS) == error_fields == set(CLEARED_ERROR)
    await any_store.batches.insert_batch(batch_row(), make_jobs(1))
    (job,) = await any_store.jobs.jobs_for_batch("b1")
    failure = {"error_class": "transient", "error_status": 503, "error_message": "m", "error_request_id": "r"}
    assert await any_store.jobs.transition(job.id, [JobState.QUEUED], JobState.RETRYING, **failure)
    assert await any_store.jobs.transition(job.id, [JobState.RETRYING], JobState.QUEUED, **CLEARED_ERROR)
    again = await any_store.jobs.get_job(job.id)
    assert again is not None
    assert all(getattr(again, column) is None for column in ERROR_COLUMNS)


async def test_an_outcome_moves_the_job_only_from_a_working_state(any_store: StoreApi) -> None:
    await any_store.batches.insert_batch(batch_row(), make_jobs(2))
    running, canceled = await any_store.jobs.jobs_for_batch("b1")
    for job in (running, canceled):
        assert await any_store.jobs.transition(job.id, [JobState.QUEUED], JobState.SUBMITTING)
    assert await any_store.jobs.cancel_jobs([canceled.id]) == [canceled.id]
    done = OutcomeRecord(target=JobState.DONE, fields={"file": "a.png"}, facts={"remote_id": "r"})
    assert await any_store.jobs.record_outcome(running.id, done)
    assert not await any_store.jobs.record_outcome(canceled.id, done)
    after = await any_store.jobs.get_job(canceled.id)
    assert after is not None
    assert (after.state, after.remote_id, after.file) == (JobState.CANCELED, "r", None)


# -- money ------------------------------------------------------------------------------------


async def test_a_budget_of_5_admits_exactly_5_reservations_at_once(any_store: StoreApi) -> None:
    await any_store.batches.insert_batch(batch_row(budget=5.0), make_jobs(12))
    jobs = await any_store.jobs.jobs_for_batch("b1")
    day = ledger_day(time.time())
    refusals = await asyncio.gather(
        *(
            any_store.ledger.reserve_under_caps(
                job.id, "b1", "local", 1.0, budget=5.0, daily_cap=None, day=day
            )
            for job in jobs
        )
    )
    assert sum(refusal is None for refusal in refusals) == 5
    assert {refusal.cap for refusal in refusals if refusal is not None} == {"budget"}
    assert await any_store.ledger.batch_exposure("b1") == 5.0
    assert await any_store.ledger.reserved_total() == 5.0


async def test_a_charge_is_recorded_once_and_the_reservation_released(any_store: StoreApi) -> None:
    await any_store.batches.insert_batch(batch_row(), make_jobs(1))
    (job,) = await any_store.jobs.jobs_for_batch("b1")
    await any_store.ledger.reserve(job.id, "b1", "local", 2.0)
    assert await any_store.ledger.settle_finished(job.id, 1.5, {"url": "u"}) == 1.5
    assert await any_store.ledger.settle_finished(job.id, 1.5, {"url": "u"}) is None
    assert await any_store.ledger.charged(batch_id="b1") == 1.5
    assert await any_store.ledger.reserved_total() == 0
    assert await any_store.ledger.batch_exposure("b1") == 1.5


async def test_an_outcome_that_ends_the_execution_gives_the_reservation_back(any_store: StoreApi) -> None:
    await any_store.batches.insert_batch(batch_row(), make_jobs(1))
    (job,) = await any_store.jobs.jobs_for_batch("b1")
    await any_store.ledger.reserve(job.id, "b1", "local", 2.0)
    assert await any_store.jobs.transition(
        job.id, [JobState.QUEUED], JobState.SUBMITTING, execution=Execution.MAYBE
    )
    failed = OutcomeRecord(target=JobState.FAILED, ended=True)
    assert await any_store.jobs.record_outcome(job.id, failed)
    assert await any_store.ledger.reserved_total() == 0
    assert await any_store.ledger.batch_exposure("b1") == 0
    assert await any_store.ledger.leaked_reservations() == []


# -- cache, pauses, outbox --------------------------------------------------------------------


async def test_the_cache_index_answers_what_was_put(any_store: StoreApi) -> None:
    assert await any_store.cache.get("k") is None
    await any_store.cache.put("k", "a" * 64, "image/png")
    assert await any_store.cache.get("k") == ("a" * 64, "image/png")
    assert await any_store.cache.cached_keys(["k", "other"]) == {"k"}


async def test_pauses_are_kept_by_scope(any_store: StoreApi) -> None:
    await any_store.pauses.set_pause("global", "maintenance")
    await any_store.pauses.set_pause("provider:local", "402")
    assert await any_store.pauses.by_scope() == {"global": "maintenance", "provider:local": "402"}
    assert await any_store.pauses.clear_pause("global")
    assert not await any_store.pauses.clear_pause("global")
    assert await any_store.pauses.by_scope() == {"provider:local": "402"}


async def test_a_notification_is_queued_once_per_key(any_store: StoreApi) -> None:
    await any_store.batches.insert_batch(batch_row(), make_jobs(1))
    assert await any_store.outbox.enqueue_notification("k1", "b1", "batch.finished", {"n": 1})
    assert not await any_store.outbox.enqueue_notification("k1", "b1", "batch.finished", {"n": 2})
    assert await any_store.outbox.pending_notifications() == 1


# -- remote batches ---------------------------------------------------------------------------


async def test_gathering_takes_only_queued_jobs_into_a_remote_batch(any_store: StoreApi) -> None:
    placed = await one_job_in_each_state(any_store)
    gathered = await any_store.remote_batches.gather(
        "openai", "b1", "gpt-image-1", "tag-1", list(placed.values()), time.time()
    )
    assert gathered is not None
    row, joined = gathered
    assert joined == [placed[JobState.QUEUED]]
    assert row.lines == 1
    after = await states_of(any_store, placed)
    assert after[JobState.QUEUED] is JobState.SUBMITTING
    assert {s for s in placed if after[s] is not s} == {JobState.QUEUED}
    assert [job.id for job in await any_store.remote_batches.members(row.id)] == joined


async def test_a_started_remote_batch_runs_only_its_jobs_still_submitting(any_store: StoreApi) -> None:
    await any_store.batches.insert_batch(batch_row(), make_jobs(2))
    jobs = await any_store.jobs.jobs_for_batch("b1")
    gathered = await any_store.remote_batches.gather(
        "openai", "b1", "gpt-image-1", "tag-1", [job.id for job in jobs], time.time()
    )
    assert gathered is not None
    row, joined = gathered
    assert await any_store.jobs.cancel_jobs([joined[1]]) == [joined[1]]
    await any_store.remote_batches.started(row.id, "batch_1", "validating", time.time())
    states = [job.state for job in await any_store.remote_batches.members(row.id)]
    assert states == [JobState.RUNNING, JobState.CANCELED]


async def test_a_state_never_moves_by_update_job(any_store: StoreApi) -> None:
    await any_store.batches.insert_batch(batch_row(), make_jobs(1))
    (job,) = await any_store.jobs.jobs_for_batch("b1")
    with pytest.raises(ValueError, match="transition"):
        await any_store.jobs.update_job(job.id, state=JobState.DONE)
    assert await any_store.jobs.update_job(job.id, possible_duplicate_charge="why")
    again = await any_store.jobs.get_job(job.id)
    assert again is not None
    assert (again.state, again.possible_duplicate_charge) == (JobState.QUEUED, "why")


# -- what `wfbatch costs` reads ---------------------------------------------------------------


async def test_cost_lines_sum_images_and_charges_by_batch_provider_model_and_day(
    any_store: StoreApi,
) -> None:
    await any_store.batches.insert_batch(batch_row(), make_jobs(3))
    jobs = await any_store.jobs.jobs_for_batch("b1")
    for job in jobs[:2]:
        await any_store.ledger.reserve(job.id, "b1", "local", 2.0)
        assert await any_store.jobs.transition(job.id, [JobState.QUEUED], JobState.SUBMITTING)
        assert await any_store.ledger.settle_finished(job.id, 1.5, {"url": "u"}) == 1.5
        assert await any_store.jobs.record_outcome(job.id, OutcomeRecord(target=JobState.DONE))
    assert await any_store.jobs.update_job(jobs[1].id, possible_duplicate_charge="a lost answer")
    today = ledger_day(time.time())
    (line,) = await any_store.ledger.cost_lines(since=today, until=today)
    assert (line.batch_id, line.batch_name, line.provider, line.day) == ("b1", "n", "local", today)
    assert (line.images, line.cache_hits, line.charged, line.refunds) == (2, 0, 3.0, 0)
    assert await any_store.ledger.cost_lines(until="2000-01-01") == []
    assert await any_store.ledger.average_charges() == {("local", line.model): 1.5}
    (duplicate,) = await any_store.ledger.possible_duplicates(since=today)
    assert (duplicate.job_uid, duplicate.day, duplicate.why) == (jobs[1].uid, today, "a lost answer")


async def test_a_release_never_gives_back_the_reservation_of_an_execution_that_may_exist(
    any_store: StoreApi,
) -> None:
    """The start that lost a race to start the job (another daemon's, a cancel's) releases; the
    winner's execution may charge, so its reservation stays."""
    await any_store.batches.insert_batch(batch_row(), make_jobs(1))
    (job,) = await any_store.jobs.jobs_for_batch("b1")
    await any_store.ledger.reserve(job.id, "b1", "local", 2.0)
    assert await any_store.jobs.transition(
        job.id, [JobState.QUEUED], JobState.SUBMITTING, execution=Execution.MAYBE
    )
    await any_store.ledger.release(job.id)
    assert await any_store.ledger.reserved_total() == 2.0
    assert await any_store.ledger.batch_exposure("b1") == 2.0


async def test_a_large_batch_is_counted_once_per_job(any_store: StoreApi) -> None:
    """Past the size where each backend inserts in bulk (SQLite: triggers set aside; PostgreSQL:
    multi-row statements counted per statement), the counters still agree with the table."""
    await any_store.batches.insert_batch(batch_row(), make_jobs(2_500))
    await any_store.batches.insert_batch(batch_row("b2", "h2"), make_jobs(3, "other-"))
    assert (await any_store.counters.counts())["queued"] == 2_503
    assert (await any_store.counters.counts_for_batches(["b1", "b2"]))["b1"]["queued"] == 2_500
    assert (await any_store.counters.check_counters()).rebuilt == ()
