"""Several accounts against one simulator port serving several keys (`wfbatch sim --accounts 3`):
each key its own windows, credit and books, as a reference server that keeps windows per key. The
real engine, real SQLite, real httpx clients over loopback."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest_sim import fast_options
from tests.daemon_harness import jsonl, running_daemon
from tests.engine_sim import enqueue, prompts
from wfbatch.core.hashing import idempotency_key
from wfbatch.core.states import JobState
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.home import HomeLayout
from wfbatch.outputs import read_manifest
from wfbatch.settings import Settings, load_settings
from wfbatch.sim import RunningSimulator
from wfbatch.sim.wireflow.book import WireflowBook
from wfbatch.store import Store

WINDOW = 4.0
"""Seconds of a simulated 'minute': each key starts at most EPM executions in it."""
EPM = 10
KEYS = ("sk-sim-key1", "sk-sim-key2", "sk-sim-key3")
NAMES = ("key1", "key2", "key3")


@contextmanager
def one_port(**options: Any) -> Iterator[RunningSimulator]:
    with RunningSimulator(fast_options(api_keys=KEYS, epm=EPM, window=WINDOW, **options)) as sim:
        yield sim


def settings_for(
    home: Path,
    sim: RunningSimulator,
    keys: tuple[str, ...] = KEYS,
    own: dict[str, dict[str, Any]] | None = None,
    **section: Any,
) -> Settings:
    """Three accounts on the simulator's one port; `own`: an account's own settings, by name."""
    accounts = [
        {"name": name, "api_key": key, "base_url": sim.base_url, **(own or {}).get(name, {})}
        for name, key in zip(NAMES, keys, strict=True)
    ]
    wireflow: dict[str, Any] = {
        "workflow_id": "wf_demo",
        "request_timeout": 5.0,
        "requests_per_minute": 10_000,
        "executions_per_minute": EPM,
        "rate_window_seconds": WINDOW,
        "daily_executions": None,
        "max_in_flight": 10,
        "poll_initial": 0.05,
        "poll_max": 0.2,
        "backoff_initial": 0.05,
        "backoff_max": 0.2,
        "accounts": accounts,
        **section,
    }
    return load_settings(home, provider="wireflow", wireflow=wireflow)


def most_in_any_window(times: list[float], span: float) -> int:
    """The most starts the server admitted in any span of `span` seconds."""
    times = sorted(times)
    most, first = 0, 0
    for last, now in enumerate(times):
        while times[first] <= now - span:
            first += 1
        most = max(most, last - first + 1)
    return most


async def test_three_keys_on_one_port_run_sixty_prompts_each_key_within_its_own_window(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with one_port() as sim:
        batch = (await enqueue(store, layout, prompts(60))).batch
        engine = Engine(store, settings_for(home, sim), layout, batch_ids=[batch.id])
        reason = await engine.run_until_idle()
        stats = sim.stats()
        books = [state.book_as(WireflowBook) for state in sim.keys.states]
    jobs = await store.jobs.jobs_for_batch(batch.id)
    assert reason.code == "done", reason
    assert all(job.state is JobState.DONE for job in jobs)
    assert stats["requests"]["wrong_key"] == 0
    by_key = {seen["account"]: seen for seen in stats["accounts"]}
    for name in NAMES:
        seen = by_key[name]
        assert seen["early_retries"] == 0, seen  # no request inside a Retry-After
        assert seen["rate_limited"] == 0, seen  # each key kept within its own window
        assert seen["executions_created"] == sum(job.account == name for job in jobs) > 0
    assert sum(seen["executions_created"] for seen in by_key.values()) == 60  # one per prompt
    for book in books:
        assert most_in_any_window(book.accepted_starts, WINDOW) <= EPM
    # Each image's manifest entry names the account it was made on (never the key).
    manifest = read_manifest(Path(batch.output_dir))
    assert {str(job.id): job.account for job in jobs} == {e.job_id: e.account for e in manifest.entries}
    assert not any(key in manifest.model_dump_json() for key in KEYS)


async def test_one_wrong_key_of_three_the_two_good_finish_and_no_job_fails(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with one_port() as sim:
        batch = (await enqueue(store, layout, prompts(30))).batch
        keys = (KEYS[0], "sk-sim-wrong-key", KEYS[2])
        engine = Engine(store, settings_for(home, sim, keys), layout, batch_ids=[batch.id])
        reason = await engine.run_until_idle()
        stats = sim.stats()
    jobs = await store.jobs.jobs_for_batch(batch.id)
    assert reason.code == "done", reason
    assert all(job.state is JobState.DONE for job in jobs)
    assert {job.account for job in jobs} == {"key1", "key3"}
    assert stats["requests"]["wrong_key"] == 1  # the account was tried once, then disabled
    assert engine.pool.account_holds[("wireflow", "key2")][1]["kind"] == "authentication"


async def test_every_key_wrong_holds_the_batch_after_one_request_per_account(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with one_port() as sim:
        batch = (await enqueue(store, layout, prompts(9))).batch
        wrong = ("sk-sim-wrong1", "sk-sim-wrong2", "sk-sim-wrong3")
        engine = Engine(store, settings_for(home, sim, wrong), layout, batch_ids=[batch.id])
        reason = await engine.run_until_idle()
        stats = sim.stats()
    assert reason.code == "paused", reason
    for place, name in enumerate(NAMES):
        assert f"{name}: wireflow: authentication failed (401)" in reason.message, reason
        # Each says which key to fix: that account's, not the section's.
        assert f"WFBATCH_WIREFLOW__ACCOUNTS__{place}__API_KEY" in reason.message, reason
    assert stats["requests"]["wrong_key"] <= 3, stats  # at most one request per account
    jobs = await store.jobs.jobs_for_batch(batch.id)
    assert all(job.state is JobState.QUEUED for job in jobs)  # kept, not failed


async def test_a_lost_start_on_one_key_is_never_sent_with_another(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with one_port() as sim:
        first = sim.keys.states[0]
        # The start reaches key1's account and creates the execution; its answer is lost, and
        # every re-send of it on key1 is cut too: only key1 may ever answer for it.
        first.queue_fault("lost_reset", route="execute", count=1)
        first.queue_fault("reset", route="execute", count=2)
        batch = (await enqueue(store, layout, prompts(6))).batch
        settings = settings_for(home, sim, max_in_flight=1, executions_per_minute=1)
        engine = Engine(store, settings, layout, batch_ids=[batch.id])
        reason = await engine.run_until_idle()
        stats = sim.stats()
    jobs = await store.jobs.jobs_for_batch(batch.id)
    assert reason.code == "done", reason
    assert all(job.state is JobState.DONE for job in jobs)
    assert any(job.account == "key1" and job.attempts > 1 for job in jobs)  # the re-sent one(s)
    for job in jobs:  # each prompt made once, on the account its job is pinned to, and nowhere else
        key = idempotency_key(job.uid, job.generation)
        made = {seen["account"]: seen["executions_by_key"].get(key, 0) for seen in stats["accounts"]}
        assert made == {name: int(name == job.account) for name in NAMES}, (job.id, made)
    total = sum(seen["executions_created"] for seen in stats["accounts"])
    assert total == 6  # one execution per prompt in the server's books


async def test_one_keys_credit_runs_out_its_unsent_jobs_move_and_the_batch_finishes(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with one_port() as sim:
        sim.keys.states[1].book_as(WireflowBook).balance = 3.0  # key2: three images
        batch = (await enqueue(store, layout, prompts(24))).batch
        engine = Engine(store, settings_for(home, sim), layout, batch_ids=[batch.id])
        reason = await engine.run_until_idle()
        stats = sim.stats()
    jobs = await store.jobs.jobs_for_batch(batch.id)
    assert reason.code == "done", reason
    assert all(job.state is JobState.DONE for job in jobs)  # no job failed for one key's credit
    by_key = {seen["account"]: seen for seen in stats["accounts"]}
    poor = by_key["key2"]
    # Only jobs that reached key2 and were created there stayed there; the others moved.
    assert poor["executions_created"] == sum(job.account == "key2" for job in jobs) <= 3
    assert sum(seen["executions_created"] for seen in by_key.values()) == 24  # one per prompt
    reason_held, details = engine.pool.account_holds[("wireflow", "key2")]
    assert details["kind"] == "credits" and "out of credits" in reason_held


async def test_an_accounts_daily_credit_cap_holds_it_and_the_others_finish(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with one_port() as sim:
        batch = (await enqueue(store, layout, prompts(12))).batch
        own = {"key1": {"daily_credit_cap": 2}}
        settings = settings_for(home, sim, own=own, costs={"default": 1.0})
        engine = Engine(store, settings, layout, batch_ids=[batch.id])
        reason = await engine.run_until_idle()
        stats = sim.stats()
    jobs = await store.jobs.jobs_for_batch(batch.id)
    assert reason.code == "done", reason
    assert all(job.state is JobState.DONE for job in jobs)
    assert sum(job.account == "key1" for job in jobs) == stats["accounts"][0]["executions_created"] <= 2
    assert await store.ledger.charged(provider="wireflow", account="key1") <= 2
    reason_held, details = engine.pool.account_holds[("wireflow", "key1")]
    assert details["kind"] == "daily_credit_cap" and "2 of 2 credits" in reason_held


async def test_every_accounts_daily_credit_cap_and_the_providers_stop_the_run_naming_them(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with one_port() as sim:
        batch = (await enqueue(store, layout, prompts(12))).batch
        own = {name: {"daily_credit_cap": 2} for name in NAMES}
        settings = settings_for(home, sim, own=own, costs={"default": 1.0}, daily_credit_cap=5)
        engine = Engine(store, settings, layout, batch_ids=[batch.id])
        reason = await engine.run_until_idle()
    jobs = await store.jobs.jobs_for_batch(batch.id)
    # The provider's cap (5) binds before the three accounts' (2 each, 6 in all).
    assert sum(job.state is JobState.DONE for job in jobs) == 5
    assert all(job.state in (JobState.DONE, JobState.QUEUED) for job in jobs)
    assert reason.code == "paused", reason
    assert "daily credit cap" in reason.message, reason


async def test_when_every_account_reaches_its_own_credit_cap_the_run_stops_naming_each(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with one_port() as sim:
        batch = (await enqueue(store, layout, prompts(9))).batch
        own = {name: {"daily_credit_cap": 2} for name in NAMES}
        settings = settings_for(home, sim, own=own, costs={"default": 1.0})
        engine = Engine(store, settings, layout, batch_ids=[batch.id])
        reason = await engine.run_until_idle()
    jobs = await store.jobs.jobs_for_batch(batch.id)
    assert sum(job.state is JobState.DONE for job in jobs) == 6  # two on each account
    assert reason.code == "paused" and "every account held" in reason.message, reason
    for name in NAMES:
        assert f"{name}: account daily credit cap reached" in reason.message, reason


WORKFLOWS = ("wf_a", "wf_b", "wf_c")


def _starts_by_workflow(sim: RunningSimulator) -> dict[str, list[float]]:
    """Per workflow, the server times of the executions its key created."""
    found: dict[str, list[float]] = {}
    for execution in sim.keys.states[0].book_as(WireflowBook).executions.values():
        found.setdefault(execution.workflow_id, []).append(execution.created_at)
    return found


async def test_one_key_with_three_workflows_starts_in_each_workflows_own_window(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    options = {"workflow_ids": WORKFLOWS, "starts_per_workflow": True}
    with one_port(**options) as sim:
        batch = (await enqueue(store, layout, prompts(30))).batch
        own = {"key1": {"workflow_ids": list(WORKFLOWS)}}
        settings = settings_for(home, sim, (KEYS[0], "sk-sim-off2", "sk-sim-off3"), own=own)
        # Only key1 is a real account here: the other two are wrong keys, disabled at once.
        engine = Engine(store, settings, layout, batch_ids=[batch.id])
        reason = await engine.run_until_idle()
        stats = sim.stats()
        by_workflow = _starts_by_workflow(sim)
    jobs = await store.jobs.jobs_for_batch(batch.id)
    assert reason.code == "done", reason
    assert all(job.state is JobState.DONE for job in jobs)
    assert stats["accounts"][0]["rate_limited"] == 0  # each workflow kept within its own window
    assert sorted(by_workflow) == list(WORKFLOWS)  # the three windows all used
    for times in by_workflow.values():
        assert most_in_any_window(times, WINDOW) <= EPM
    # Each job stays on the workflow its start went to: `key1/wf_b` and so on.
    assert {job.account for job in jobs} == {f"key1/{w}" for w in WORKFLOWS}


async def test_a_server_that_limits_starts_per_key_is_learnt_and_said_once(
    store: Store, layout: HomeLayout, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with one_port(workflow_ids=WORKFLOWS) as sim:  # one start window for the key
        batch = (await enqueue(store, layout, prompts(24))).batch
        own = {"key1": {"workflow_ids": list(WORKFLOWS)}}
        settings = settings_for(home, sim, (KEYS[0], "sk-sim-off2", "sk-sim-off3"), own=own)
        engine = Engine(store, settings, layout, batch_ids=[batch.id])
        with caplog.at_level(logging.WARNING, logger="wfbatch.engine"):
            reason = await engine.run_until_idle()
        stats = sim.stats()
    jobs = await store.jobs.jobs_for_batch(batch.id)
    assert reason.code == "done", reason
    assert all(job.state is JobState.DONE for job in jobs)
    learnt = [r for r in caplog.records if "limits starts per key, not per workflow" in r.getMessage()]
    assert len(learnt) == 1, [r.getMessage() for r in caplog.records]
    assert ("wireflow", "key1") in engine.pool.starts_per_key
    # After the lesson the key's workflows share one window: 429s stop at the first burst's (the
    # starts the other workflows' windows let out at once), and so do requests arriving inside its
    # Retry-After (those already on the wire when the first 429 came); none after that.
    first_burst = (len(WORKFLOWS) - 1) * EPM
    assert stats["accounts"][0]["rate_limited"] <= first_burst
    assert stats["accounts"][0]["early_retries"] <= first_burst


def test_after_kill_9_a_lost_start_on_one_key_is_still_never_sent_with_another() -> None:
    with one_port() as sim:
        first = sim.keys.states[0]
        # key1 creates the pinned prompt's execution and loses the answer; its next re-sends are
        # cut too (a few, then the replay of its idempotency key answers).
        first.queue_fault("lost_reset", route="execute", count=1)
        first.queue_fault("reset", route="execute", count=6)
        env = {
            "WFBATCH_PROVIDER": "wireflow",
            "WFBATCH_WIREFLOW__WORKFLOW_ID": "wf_demo",
            "WFBATCH_WIREFLOW__RATE_WINDOW_SECONDS": str(WINDOW),
            "WFBATCH_WIREFLOW__POLL_INITIAL": "0.05",
            "WFBATCH_WIREFLOW__BACKOFF_INITIAL": "0.05",
            "WFBATCH_WIREFLOW__BACKOFF_MAX": "0.2",
            "WFBATCH_WIREFLOW__MAX_ATTEMPTS": "20",
        }
        for index, (name, key) in enumerate(zip(NAMES[:2], KEYS[:2], strict=True)):
            prefix = f"WFBATCH_WIREFLOW__ACCOUNTS__{index}__"
            env |= {prefix + "NAME": name, prefix + "API_KEY": key, prefix + "BASE_URL": sim.base_url}
        with running_daemon(env=env) as daemon:
            daemon.drop("pinned.jsonl", jsonl("pinned"))
            daemon.wait_until(
                lambda: first.stats()["requests"]["by_route"].get("execute", 0) >= 3,
                what="the lost start re-sent on key1",
            )
            daemon.kill()
            daemon.start()
            daemon.drop("later.jsonl", jsonl("later one", "later two"))
            daemon.wait_until(lambda: daemon.status()["jobs"].get("done") == 3, what="every job done")
        stats = sim.stats()
        made = [
            (name, execution.prompt)
            for name, state in zip(NAMES, sim.keys.states, strict=False)
            for execution in state.book_as(WireflowBook).executions.values()
        ]
    # One execution per prompt in the server's books; the pinned prompt's is key1's, made by its
    # first (lost) start and replayed after: key2 never started it, before the kill or after.
    prompts_made = sorted(prompt for _, prompt in made)
    assert prompts_made == ["later one", "later two", "pinned"], made
    assert ("key1", "pinned") in made
    assert stats["accounts"][0]["replays"] >= 1


async def test_each_keys_balance_is_read_on_its_own_and_shown_with_its_account(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with one_port(credits=5.0) as sim:
        sim.keys.states[1].book_as(WireflowBook).balance = 9.0
        engine = Engine(store, settings_for(home, sim), layout)
        total = await engine.pool.refresh_balance("wireflow")
        await engine.shutdown()
    assert total == 5.0 + 9.0 + 5.0  # the provider's: the sum of its keys'
    balances = {account: engine.pool.account_balances[("wireflow", account)] for account in NAMES}
    assert balances == {"key1": 5.0, "key2": 9.0, "key3": 5.0}
