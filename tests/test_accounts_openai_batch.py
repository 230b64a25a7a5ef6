"""OpenAI Batch mode with several accounts, against one OpenAI simulator port serving their keys:
a remote batch goes to one account, and its upload, creation, polls, results and cancel use that
account's key (the jobs in it are pinned to it). The real engine, httpx client and SQLite."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.test_openai_batch import PRICE, enqueue, shots
from wfbatch.core.states import JobState
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.home import HomeLayout
from wfbatch.settings import Settings, load_settings
from wfbatch.sim import RunningSimulator, SimOptions
from wfbatch.store import Store
from wfbatch.store.remote_batches import Step

KEYS = ("sk-batch-key-one", "sk-batch-key-two")
NAMES = ("one", "two")


def two_key_sim(**overrides: Any) -> RunningSimulator:
    values: dict[str, Any] = {"provider": "openai", "latency": (0.0, 0.0), "seed": 7, "api_keys": KEYS}
    values["batch_step"] = 0.05
    values.update(overrides)
    return RunningSimulator(SimOptions(**values))


def accounts_settings(home: Path, sim: RunningSimulator, keys: tuple[str, ...] = KEYS) -> Settings:
    accounts = [
        {"name": name, "api_key": key, "base_url": sim.base_url}
        for name, key in zip(NAMES, keys, strict=True)
    ]
    openai = {
        "mode": "batch",
        "batch_poll_interval": 0.05,
        "batch_gather_seconds": 0.0,
        "backoff_initial": 0.05,
        "request_timeout": 5.0,
        "accounts": accounts,
    }
    return load_settings(home, provider="openai", openai=openai)


async def test_remote_batches_are_shared_out_and_each_stays_on_its_account(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with two_key_sim() as sim:
        ingested = await enqueue(store, layout, shots(10))
        engine = Engine(store, accounts_settings(home, sim), layout, batch_ids=[ingested.batch.id])
        reason = await engine.run_until_idle()
        stats = sim.stats()
    assert reason.code == "done", reason
    jobs = await store.jobs.list_jobs(batch_id=ingested.batch.id, limit=100)
    assert [job.state for job in jobs] == [JobState.DONE] * 10
    rows = await store.remote_batches.of_batches([ingested.batch.id])
    assert sorted(row.account or "" for row in rows) == ["one", "two"]  # one remote batch per account
    assert all(row.step is Step.CLOSED for row in rows)
    by_key = {seen["account"]: seen for seen in stats["accounts"]}
    for index, row in enumerate(sorted(rows, key=lambda r: r.account or "")):
        seen = by_key[f"key{index + 1}"]
        # That account's key uploaded, created and collected it: its own books hold it.
        assert seen["batch"]["batches_created"] == 1 and seen["batch"]["uploads"] == 1
        members = sum(job.account == row.account for job in jobs)  # the jobs pinned to its account
        assert seen["openai"]["generations"] == members == row.total
    for name in NAMES:
        charged = await store.ledger.charged(provider="openai", account=name)
        members = sum(job.account == name for job in jobs)
        assert abs(charged - PRICE / 2 * members) < 1e-9


async def test_a_wrong_key_sends_its_share_to_the_other_account(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with two_key_sim() as sim:
        ingested = await enqueue(store, layout, shots(6))
        settings = accounts_settings(home, sim, (KEYS[0], "sk-batch-wrong"))
        engine = Engine(store, settings, layout, batch_ids=[ingested.batch.id])
        reason = await asyncio.wait_for(engine.run_until_idle(), 120)
        stats = sim.stats()
    assert reason.code == "done", reason
    jobs = await store.jobs.list_jobs(batch_id=ingested.batch.id, limit=100)
    assert [job.state for job in jobs] == [JobState.DONE] * 6
    assert {job.account for job in jobs} == {"one"}
    assert stats["accounts"][0]["openai"]["generations"] == 6
    assert ("openai", "two") in engine.pool.account_holds
