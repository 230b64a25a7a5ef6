"""A [schedule] window that closes mid-batch: the engine (local provider, real SQLite file) on a clock
the test moves. Nothing starts while it is closed, what was in flight finishes, and work goes on when
it reopens; the start times are the ones the store recorded."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from typing import Any

from tests.conftest_sim import fast_options
from tests.daemon_harness import jsonl, running_daemon
from tests.deadlines import patience
from wfbatch.core.parsing import parse_prompt_bytes
from wfbatch.core.states import JobState
from wfbatch.engine.clock import SystemClock
from wfbatch.engine.intake.ingest import ingest
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.home import HomeLayout
from wfbatch.protocol import Event, JobEvent, ProviderEvent
from wfbatch.settings import ScheduleEntry
from wfbatch.sim import RunningSimulator
from wfbatch.store import Reuse, Store


class MovedClock(SystemClock):
    def __init__(self) -> None:
        self.offset = 0.0

    def wall(self) -> float:
        return time.time() + self.offset


def hour_window_from_now() -> tuple[str, float]:
    """A window from this minute (local time) for an hour; and when it closes."""
    start = dt.datetime.now().astimezone().replace(second=0, microsecond=0)
    end = start + dt.timedelta(hours=1)
    return f"{start:%H:%M}-{end:%H:%M}", end.timestamp()


async def wait_for(condition: Any) -> None:
    deadline = time.monotonic() + patience()
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_a_window_that_closes_mid_batch_starts_nothing_until_it_reopens_and_loses_nothing(
    store: Store, layout: HomeLayout, make_settings: Any
) -> None:
    window, closes = hour_window_from_now()
    settings = make_settings(
        local={"latency_min": 0.1, "latency_max": 0.2, "max_in_flight": 2},
        schedule={"local": {"windows": [window]}},
    )
    raw = "\n".join(json.dumps({"prompt": f"p{i}", "width": 32, "height": 32}) for i in range(30)).encode()
    parsed = parse_prompt_bytes(raw, "b.jsonl")
    batch = (await ingest(store, layout, parsed, raw, "local", reuse=Reuse.NEVER)).batch
    clock = MovedClock()
    some_done, closed, reopened = asyncio.Event(), asyncio.Event(), asyncio.Event()
    done: list[int] = []
    told: list[ProviderEvent] = []

    def seen(event: Event) -> None:
        if isinstance(event, JobEvent) and event.state is JobState.DONE:
            done.append(event.id)
            if len(done) >= 4:
                some_done.set()
        if isinstance(event, ProviderEvent):
            told.append(event)
            (closed if event.event == "paused" else reopened).set()

    engine = Engine(store, settings, layout, clock=clock, events=seen, batch_ids=[batch.id])
    running = asyncio.create_task(engine.run_until_idle())
    await asyncio.wait_for(some_done.wait(), patience())
    clock.offset = closes - time.time() + 60  # a minute after the window closed
    closed_at = clock.wall()
    engine.wake()
    await asyncio.wait_for(closed.wait(), patience())
    assert told[0].details["kind"] == "window" and "the next opens at" in (told[0].reason or "")
    assert engine.holds.provider_hold("local") is not None

    async def nothing_in_flight() -> bool:
        counts = await store.counters.counts([batch.id])
        return not any(counts[state] for state in ("submitting", "running"))

    await wait_for(nothing_in_flight)  # what was in flight finished, without a new start
    finished_while_closed = len(done)
    assert not running.done()  # `run` waits for the window, as the daemon does
    jobs = await store.jobs.jobs_for_batch(batch.id)
    assert all(job.started_at is None or job.started_at < closed_at for job in jobs)
    assert (await store.counters.counts([batch.id]))["queued"] == 30 - finished_while_closed

    clock.offset += 23 * 3600  # the same window the next day: open again
    reopened_at = clock.wall()
    engine.wake()
    reason = await asyncio.wait_for(running, patience(60))
    assert reason.code == "done", reason
    assert reopened.is_set()
    jobs = await store.jobs.jobs_for_batch(batch.id)
    assert all(job.state is JobState.DONE and job.attempts == 1 for job in jobs)  # none lost, none redone
    started = [job.started_at for job in jobs if job.started_at is not None]
    assert all(at < closed_at or at >= reopened_at for at in started)
    assert sum(1 for at in started if at >= reopened_at) == 30 - finished_while_closed


def test_a_provider_outside_its_window_is_held_in_status_saying_when_it_opens() -> None:
    opens = (dt.datetime.now().astimezone() + dt.timedelta(hours=2)).replace(second=0, microsecond=0)
    window = f"{opens:%H:%M}-{opens + dt.timedelta(hours=1):%H:%M}"
    env = {"WFBATCH_SCHEDULE__LOCAL__WINDOWS": json.dumps([window])}
    with running_daemon(env=env) as daemon:
        daemon.drop("night.jsonl", jsonl("a fox", "a cat"))
        daemon.wait_until(lambda: daemon.status()["batches"], what="the batch")
        status = daemon.status()
        hold = next(h for h in status["holds"] if h["kind"] == "window")
        # `22:00` today, `Tue 01:00` past midnight: this machine's local time either way.
        assert hold["target"] == "local" and "the next opens at" in hold["reason"]
        assert f"{opens:%H:%M}" in hold["reason"]
        assert "[schedule.local]" in hold["lift"]
        assert hold["reason"] in (status["providers"]["local"]["paused"] or "")
        text = daemon.cli("status", columns=100).output
        assert "outside its [schedule] windows" in text, text


def test_an_accounts_own_windows_replace_the_providers() -> None:
    entry = ScheduleEntry(
        windows=["22:00-06:00"], timezone="Europe/Berlin", accounts={"day": ["09:00-17:00"]}
    )
    noon = dt.datetime(2026, 12, 8, 11, 0, tzinfo=dt.UTC).timestamp()  # 12:00 in Berlin
    assert not entry.schedule().is_open(noon) and not entry.schedule("night").is_open(noon)
    assert entry.schedule("day").is_open(noon)


def test_an_account_outside_its_own_window_is_shown_held_saying_when_it_opens() -> None:
    # Seen in a rehearsal: an account outside its window started nothing yet `status` called it
    # `ready`, with no reason, beside its busy siblings.
    opens = (dt.datetime.now().astimezone() + dt.timedelta(hours=2)).replace(second=0, microsecond=0)
    window = f"{opens:%H:%M}-{opens + dt.timedelta(hours=1):%H:%M}"
    with RunningSimulator(fast_options(api_keys=("sk-day", "sk-night"))) as sim:
        env = {
            "WFBATCH_PROVIDER": "wireflow",
            "WFBATCH_WIREFLOW__WORKFLOW_ID": "wf_demo",
            "WFBATCH_WIREFLOW__POLL_INITIAL": "0.05",
            "WFBATCH_WIREFLOW__POLL_MAX": "0.2",
            "WFBATCH_SCHEDULE__WIREFLOW__ACCOUNTS": json.dumps({"night": [window]}),
        }
        for index, name in enumerate(("day", "night")):
            prefix = f"WFBATCH_WIREFLOW__ACCOUNTS__{index}__"
            env |= {prefix + "NAME": name, prefix + "API_KEY": f"sk-{name}"}
            env[prefix + "BASE_URL"] = sim.base_url
        with running_daemon(env=env) as daemon:
            daemon.drop("two.jsonl", jsonl("a fox", "a cat"))

            def finished() -> dict[str, Any] | None:
                wireflow = daemon.status()["providers"].get("wireflow")
                return wireflow if wireflow and wireflow["jobs"].get("done") == 2 else None

            wireflow = daemon.wait_until(finished, what="the batch done on the day account")
            accounts = {account["name"]: account for account in wireflow["accounts"]}
            assert accounts["day"]["state"] == "ready"
            night = accounts["night"]
            assert night["state"] == "held" and night["kind"] == "window", night
            assert "outside its [schedule] windows" in night["why"] and f"{opens:%H:%M}" in night["why"]
            assert wireflow["paused"] is None  # the day account is open: the provider is not held
            shown = daemon.cli("status", columns=160).output
            line = next(x for x in shown.splitlines() if "account night" in x)
            assert "held: outside its [schedule] windows" in line, line
