"""Several accounts of one provider: the real engine, real SQLite, and one Wireflow simulator per
account (its own port, its own key, its own windows) over loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from tests.conftest_sim import fast_options
from tests.daemon_harness import jsonl, running_daemon
from tests.deadlines import scaled
from tests.engine_sim import enqueue, prompts
from wfbatch.core.hashing import idempotency_key
from wfbatch.core.states import Execution, JobState
from wfbatch.daemon.context import DaemonContext
from wfbatch.daemon.eta import provider_seconds
from wfbatch.daemon.pooled import pooled_snapshot
from wfbatch.engine.clock import SystemClock
from wfbatch.engine.events import discard
from wfbatch.engine.loop.pool import ProviderPool
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.home import HomeLayout
from wfbatch.providers.base import RequestKind
from wfbatch.providers.registry import provider_label
from wfbatch.settings import Settings, load_settings
from wfbatch.sim import RunningSimulator
from wfbatch.store import Store

WINDOW = 2.0
"""Seconds of a simulated 'minute': each account starts at most 10 executions in it."""


def account_settings(
    home: Path, sims: dict[str, RunningSimulator], keys: dict[str, str], **account: Any
) -> Settings:
    accounts = [
        {"name": name, "api_key": keys.get(name, f"sk-key-{name}"), "base_url": sim.base_url, **account}
        for name, sim in sims.items()
    ]
    wireflow: dict[str, Any] = {
        "workflow_id": "wf_demo",
        "request_timeout": 5.0,
        "requests_per_minute": 10_000,
        "executions_per_minute": 10,
        "rate_window_seconds": WINDOW,
        "daily_executions": None,
        "max_in_flight": 10,
        "poll_initial": 0.05,
        "poll_max": 0.2,
        "backoff_initial": 0.05,
        "backoff_max": 0.2,
        "accounts": accounts,
    }
    return load_settings(home, provider="wireflow", wireflow=wireflow)


@contextlib.contextmanager
def simulators(*names: str, **options: Any) -> Iterator[dict[str, RunningSimulator]]:
    with contextlib.ExitStack() as stack:
        yield {
            name: stack.enter_context(
                RunningSimulator(fast_options(api_key=f"sk-key-{name}", epm=10, window=WINDOW, **options))
            )
            for name in names
        }


async def test_three_accounts_share_out_a_batch_each_within_its_own_limit(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with simulators("a", "b", "c") as sims:
        batch = (await enqueue(store, layout, prompts(60))).batch
        engine = Engine(store, account_settings(home, sims, {}), layout, batch_ids=[batch.id])
        reason = await engine.run_until_idle()
        stats = {name: sim.state.stats() for name, sim in sims.items()}
    jobs = await store.jobs.jobs_for_batch(batch.id)
    assert reason.code == "done", reason
    assert all(job.state is JobState.DONE for job in jobs)
    for name, seen in stats.items():
        assert seen["rate_limited"] == 0, (name, seen)  # each key kept within its own window
        assert seen["executions_created"] == sum(job.account == name for job in jobs) > 0
    assert sum(seen["executions_created"] for seen in stats.values()) == 60  # one per prompt
    for name, seen in stats.items():  # money per account: the ledger's charges name their account
        assert await store.ledger.charged(provider="wireflow", account=name) == seen["credits"]["charged"] > 0


async def test_a_wrong_key_disables_its_account_and_the_others_finish(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with simulators("a", "b", "c") as sims:
        batch = (await enqueue(store, layout, prompts(30))).batch
        settings = account_settings(home, sims, {"b": "sk-wrong-key"})
        engine = Engine(store, settings, layout, batch_ids=[batch.id])
        reason = await engine.run_until_idle()
        stats = {name: sim.state.stats() for name, sim in sims.items()}
    jobs = await store.jobs.jobs_for_batch(batch.id)
    assert reason.code == "done", reason
    assert all(job.state is JobState.DONE for job in jobs)
    assert {job.account for job in jobs} == {"a", "c"}
    assert stats["b"]["executions_created"] == 0
    assert stats["b"]["requests"]["total"] == 1  # one job probes an account until it has answered
    assert engine.pool.account_holds[("wireflow", "b")][1]["kind"] == "authentication"
    engine.reload_limits(settings)  # SIGHUP: the key may have been fixed, the account is tried again
    assert ("wireflow", "b") not in engine.pool.account_holds


async def _until(predicate: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + scaled(30.0)
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_a_start_that_may_exist_on_one_account_is_never_sent_on_another(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with simulators("b") as other, RunningSimulator(
        fast_options(api_key="sk-key-a", epm=10, window=WINDOW)
    ) as first:
        sims = {"a": first, **other}
        # The start reaches account a and creates the execution; its answer is lost.
        first.state.queue_fault("lost_reset", route="execute", count=1)
        first.state.queue_fault("reset", route="execute", count=1000)  # and it cannot be replayed
        pinned_batch = (await enqueue(store, layout, prompts(1, "pinned"), "pinned.jsonl")).batch
        settings = account_settings(home, sims, {})
        engine = Engine(store, settings, layout)
        stop = asyncio.Event()
        running = asyncio.create_task(engine.run_forever(stop))
        try:

            async def lost_on_a() -> bool:
                [job] = await store.jobs.jobs_for_batch(pinned_batch.id)
                return job.account == "a" and job.execution is Execution.MAYBE and job.attempts >= 2

            await _until(lost_on_a, "the start on account a to be lost")
            first.stop()  # account a goes away: its jobs wait for it, and it is held as unreachable

            async def a_held() -> bool:
                return ("wireflow", "a") in engine.pool.account_holds

            await _until(a_held, "account a to be held")
            # Work of account b goes on meanwhile: a later batch finishes there.
            later = (await enqueue(store, layout, prompts(3, "later"), "later.jsonl")).batch

            async def later_done() -> bool:
                return all(job.state is JobState.DONE for job in await store.jobs.jobs_for_batch(later.id))

            await _until(later_done, "the later batch to finish on account b")
        finally:
            stop.set()
            await running
            await engine.shutdown()
        stats_b = other["b"].state.stats()
        first_stats = first.state.stats()
    [pinned] = await store.jobs.jobs_for_batch(pinned_batch.id)
    assert pinned.account == "a" and pinned.state is not JobState.DONE
    assert pinned.execution is Execution.MAYBE
    assert stats_b["executions_created"] == 3  # the later batch only: never the pinned prompt
    assert idempotency_key(pinned.uid, pinned.generation) not in stats_b["executions_by_key"]
    assert first_stats["executions_created"] == 1  # the one execution of the pinned prompt


def test_status_lists_each_account_and_names_the_disabled_one_never_its_key() -> None:
    with simulators("good", "bad") as sims:
        env = {
            "WFBATCH_PROVIDER": "wireflow",
            "WFBATCH_WIREFLOW__WORKFLOW_ID": "wf_demo",
            "WFBATCH_WIREFLOW__RATE_WINDOW_SECONDS": str(WINDOW),
            "WFBATCH_WIREFLOW__POLL_INITIAL": "0.05",
            "WFBATCH_WIREFLOW__POLL_MAX": "0.2",
        }
        keys = {"good": "sk-key-good", "bad": "sk-key-wrong-never-shown"}
        for index, (name, sim) in enumerate(sims.items()):
            prefix = f"WFBATCH_WIREFLOW__ACCOUNTS__{index}__"
            env |= {prefix + "NAME": name, prefix + "API_KEY": keys[name], prefix + "BASE_URL": sim.base_url}
        with running_daemon(env=env) as daemon:
            daemon.drop("six.jsonl", jsonl("one", "two", "three", "four", "five", "six"))

            def finished() -> dict[str, Any] | None:
                wireflow = daemon.status()["providers"].get("wireflow")
                return wireflow if wireflow and wireflow["jobs"].get("done") == 6 else None

            wireflow = daemon.wait_until(finished, what="the batch done on the good account")
            accounts = {account["name"]: account for account in wireflow["accounts"]}
            assert accounts["good"]["state"] == "ready"
            assert accounts["bad"]["state"] == "held" and accounts["bad"]["kind"] == "authentication"
            assert wireflow["paused"] is None  # one account left is enough: the provider is not held
            shown = daemon.cli("status", columns=160)
            assert shown.exit_code == 0, shown.output
            bad_line = next(line for line in shown.output.splitlines() if "account bad" in line)
            assert "held" in bad_line and "Invalid API key" in bad_line
            assert "sk-key" not in shown.output and "sk-key" not in str(daemon.status())
            with daemon.http() as http:  # metrics labelled by provider and account
                metrics = http.get("/v1/metrics").text
            assert 'wfbatch_account_held{provider="wireflow",account="bad",pool="bad"} 1' in metrics
            assert 'wfbatch_account_held{provider="wireflow",account="good",pool="good"} 0' in metrics
            good = '{provider="wireflow",account="good",pool="good"}'
            assert f"wfbatch_account_credits_used_total{good} 6" in metrics
            assert "sk-key" not in metrics


async def test_a_429_blocks_only_the_pool_of_the_account_that_got_it(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with contextlib.ExitStack() as stack:
        # Account a's server allows fewer starts than its configured limit: it answers 429.
        sims = {
            name: stack.enter_context(
                RunningSimulator(fast_options(api_key=f"sk-key-{name}", epm=epm, window=WINDOW))
            )
            for name, epm in (("a", 2), ("b", 10))
        }
        batch = (await enqueue(store, layout, prompts(10))).batch
        engine = Engine(store, account_settings(home, sims, {}), layout, batch_ids=[batch.id])
        reason = await engine.run_until_idle()
    jobs = await store.jobs.jobs_for_batch(batch.id)
    assert reason.code == "done", reason
    assert all(job.state is JobState.DONE for job in jobs)
    assert engine.pool.account_limiter("wireflow", "a").rate_limited >= 1
    assert engine.pool.account_limiter("wireflow", "b").rate_limited == 0


async def test_no_credit_holds_only_that_account_and_the_others_finish(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with contextlib.ExitStack() as stack:
        sims = {
            name: stack.enter_context(
                RunningSimulator(
                    fast_options(api_key=f"sk-key-{name}", epm=10, window=WINDOW, credits=credits)
                )
            )
            for name, credits in (("poor", 2.0), ("rich", None))
        }
        batch = (await enqueue(store, layout, prompts(12))).batch
        engine = Engine(store, account_settings(home, sims, {}), layout, batch_ids=[batch.id])
        reason = await engine.run_until_idle()
        poor = sims["poor"].state.stats()
    jobs = await store.jobs.jobs_for_batch(batch.id)
    assert reason.code == "done", reason
    assert all(job.state is JobState.DONE for job in jobs)  # no job failed for one account's credit
    assert poor["executions_created"] == sum(job.account == "poor" for job in jobs) <= 2
    reason_held, details = engine.pool.account_holds[("wireflow", "poor")]
    assert details["kind"] == "credits" and "out of credits" in reason_held


async def test_with_every_key_wrong_the_batch_is_held_naming_each_account_with_nothing_started(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with simulators("a", "b", "c") as sims:
        batch = (await enqueue(store, layout, prompts(9))).batch
        wrong = {name: f"sk-wrong-{name}" for name in sims}
        engine = Engine(store, account_settings(home, sims, wrong), layout, batch_ids=[batch.id])
        reason = await engine.run_until_idle()
        stats = {name: sim.state.stats() for name, sim in sims.items()}
    assert reason.code == "paused", reason
    assert reason.message.startswith("wireflow: every account held: ")
    for name in ("a", "b", "c"):
        assert f"{name}: wireflow: authentication failed (401)" in reason.message, reason
        # One job probes each account (its cost estimate, whose 401 disables the account before
        # anything else is sent): nothing is started, nothing more is asked.
        assert stats[name]["requests"]["by_route"].get("execute") is None, (name, stats[name])
        assert stats[name]["requests"]["total"] <= 1, (name, stats[name])
    jobs = await store.jobs.jobs_for_batch(batch.id)
    assert all(job.state is JobState.QUEUED for job in jobs)  # kept, not failed


async def test_when_every_account_reaches_its_daily_cap_the_run_stops_held_naming_them(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with simulators("a", "b") as sims:
        batch = (await enqueue(store, layout, prompts(6))).batch
        settings = account_settings(home, sims, {}, daily_executions=2)
        engine = Engine(store, settings, layout, batch_ids=[batch.id])
        reason = await engine.run_until_idle()
    jobs = await store.jobs.jobs_for_batch(batch.id)
    assert reason.code == "paused", reason
    assert "every account held" in reason.message and "daily execution cap reached" in reason.message
    assert sum(job.state is JobState.DONE for job in jobs) == 4  # two on each account, then held
    assert sorted(job.account for job in jobs if job.state is JobState.DONE) == ["a", "a", "b", "b"]


async def test_accounts_naming_one_pool_share_its_limiter(store: Store, home: Path) -> None:
    settings = load_settings(
        home,
        provider="wireflow",
        wireflow={
            "workflow_id": "wf_demo",
            "accounts": [
                {"name": "x", "api_key": "sk-x", "pool": "org"},
                {"name": "y", "api_key": "sk-y", "pool": "org"},
                {"name": "z", "api_key": "sk-z"},
            ],
        },
    )
    pool = ProviderPool(store, settings, SystemClock(), discard, lambda: None)
    assert pool.account_limiter("wireflow", "x") is pool.account_limiter("wireflow", "y")
    assert pool.account_limiter("wireflow", "z") is not pool.account_limiter("wireflow", "x")


def test_after_kill_9_a_maybe_started_job_still_waits_for_its_own_account() -> None:
    with simulators("b") as other, RunningSimulator(
        fast_options(api_key="sk-key-a", epm=10, window=WINDOW)
    ) as first:
        sims = {"a": first, **other}
        first.state.queue_fault("lost_reset", route="execute", count=1)
        first.state.queue_fault("reset", route="execute", count=1000)
        env = {
            "WFBATCH_PROVIDER": "wireflow",
            "WFBATCH_WIREFLOW__WORKFLOW_ID": "wf_demo",
            "WFBATCH_WIREFLOW__RATE_WINDOW_SECONDS": str(WINDOW),
            "WFBATCH_WIREFLOW__POLL_INITIAL": "0.05",
            "WFBATCH_WIREFLOW__BACKOFF_INITIAL": "0.05",
            "WFBATCH_WIREFLOW__BACKOFF_MAX": "0.2",
        }
        for index, (name, sim) in enumerate(sims.items()):
            prefix = f"WFBATCH_WIREFLOW__ACCOUNTS__{index}__"
            env |= {prefix + "NAME": name, prefix + "API_KEY": f"sk-key-{name}"}
            env[prefix + "BASE_URL"] = sim.base_url
        with running_daemon(env=env) as daemon:
            daemon.drop("pinned.jsonl", jsonl("pinned"))
            daemon.wait_until(
                lambda: first.state.stats()["requests"]["by_route"].get("execute", 0) >= 3,
                what="the lost start re-sent on account a",
            )
            daemon.kill()
            first.stop()  # account a is gone while wfbatch is down
            daemon.start()
            daemon.drop("later.jsonl", jsonl("later one", "later two"))
            daemon.wait_until(lambda: daemon.status()["jobs"].get("done") == 2, what="the later jobs done")
            assert daemon.status()["jobs"].get("done") == 2  # the pinned job is not among them
        on_b = other["b"].state.stats()
    assert first.state.stats()["executions_created"] == 1
    assert on_b["executions_created"] == 2  # the later jobs only: the pinned prompt never went to b


async def test_the_daemon_eta_counts_every_pool(store: Store, layout: HomeLayout, home: Path) -> None:
    section: dict[str, Any] = {"workflow_id": "wf_demo", "executions_per_minute": 10, "expected_latency": 1.0}
    one = load_settings(home, provider="wireflow", wireflow={**section, "api_key": "sk-one"})
    accounts = [{"name": name, "api_key": f"sk-{name}"} for name in ("a", "b", "c")]
    three = load_settings(home, provider="wireflow", wireflow={**section, "accounts": accounts})
    seconds = []
    for settings in (one, three):
        engine = Engine(store, settings, layout)
        context = cast(DaemonContext, SimpleNamespace(engine=engine, store=store, settings=settings))
        seconds.append(await provider_seconds(context, "wireflow", 60))
    single, pooled = seconds
    assert single is not None and pooled is not None
    assert pooled < single / 2  # three pools of 10 starts a minute, not one


async def test_the_providers_status_line_sums_its_pools(store: Store, home: Path) -> None:
    # Seen in a rehearsal: three busy accounts, and the provider's line said "0/10 starts, 0/4 in
    # flight, idle" because with accounts its own limiter is never used.
    settings = load_settings(
        home,
        provider="wireflow",
        wireflow={
            "workflow_id": "wf_demo",
            "executions_per_minute": 10,
            "max_in_flight": 4,
            "accounts": [
                {"name": "x", "api_key": "sk-x", "pool": "org"},
                {"name": "y", "api_key": "sk-y", "pool": "org"},
                {"name": "z", "api_key": "sk-z"},
            ],
        },
    )
    pool = ProviderPool(store, settings, SystemClock(), discard, lambda: None)
    org, own = pool.account_limiter("wireflow", "x"), pool.account_limiter("wireflow", "z")
    await org.acquire(RequestKind.START)
    await own.acquire(RequestKind.START)
    await own.acquire(RequestKind.POLL)
    org.in_flight, own.in_flight = 2, 1
    limiters = [pool.account_limiter("wireflow", name) for name in ("x", "y", "z")]
    shown = pooled_snapshot(pool.limiter("wireflow").snapshot().to_json(), limiters)
    assert (shown["executions_in_window"], shown["executions_per_minute"]) == (2, 20)  # org counted once
    assert (shown["in_flight"], shown["max_in_flight"]) == (3, 8)
    assert shown["requests_in_window"] == 1  # wireflow's starts are not requests; the poll is
    single = pool.limiter("wireflow").snapshot().to_json()
    assert pooled_snapshot(single, [pool.limiter("wireflow")]) == single


def test_the_label_names_where_the_accounts_go_not_the_unused_section_url(home: Path) -> None:
    # Seen in a rehearsal against `wfbatch sim --accounts 3`: status and the TUI header said
    # "at www.wireflow.ai" while every account talked to the simulator.
    accounts = [{"name": n, "api_key": f"sk-{n}", "base_url": "http://127.0.0.1:8801/api/v1"} for n in "ab"]
    same = load_settings(home, provider="wireflow", wireflow={"workflow_id": "wf_demo", "accounts": accounts})
    assert "127.0.0.1:8801" in provider_label("wireflow", same)
    apart = [accounts[0], {"name": "c", "api_key": "sk-c"}]
    mixed = load_settings(home, provider="wireflow", wireflow={"workflow_id": "wf_demo", "accounts": apart})
    assert provider_label("wireflow", mixed) == mixed.provider_limits("wireflow").label()
