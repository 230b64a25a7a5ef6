"""ComfyUI with several servers (providers.md §7, issue 15 "Several GPUs"): a job lost by a
restarted server moves to another once every server answered without it, a move survives a wfbatch
crash (found again by its deterministic prompt_id), an unreachable server's jobs wait, and history
is deleted after a download. The real provider against two `wfbatch sim --provider comfyui` servers
over loopback, their time driven by a hand-moved clock."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import httpx

from tests.conftest_sim import CountingGate
from tests.daemon_harness import jsonl, running_daemon
from tests.test_comfyui import spec
from tests.test_tui_support import FakeDaemon, wait_until
from wfbatch.protocol import ProviderStatus, ServerStatus, Status
from wfbatch.providers.base import Finished, Pending, Submitted
from wfbatch.providers.comfyui.client import ComfyUIProvider
from wfbatch.providers.comfyui.settings import ComfyUISettings
from wfbatch.providers.config import host_of
from wfbatch.sim import RunningSimulator, SimOptions
from wfbatch.tui import WfbatchApp
from wfbatch.tui.widgets.header import StatusHeader

RUN = 10.0
"""Simulated seconds one prompt takes: only the hand-moved clock advances it."""


class HandClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def server(clock: HandClock) -> RunningSimulator:
    return RunningSimulator(SimOptions(provider="comfyui", latency=(RUN, RUN), seed=7), clock=clock)


def provider_for(*sims: RunningSimulator) -> ComfyUIProvider:
    settings = ComfyUISettings(base_url=[s.base_url for s in sims], request_timeout=5.0)
    return ComfyUIProvider(settings, CountingGate())


def executions(*sims: RunningSimulator) -> Counter[str]:
    total: Counter[str] = Counter()
    for sim in sims:
        total.update(sim.state.book.executions_by_prompt_id)
    return total


async def submitted(provider: ComfyUIProvider, prompt: str, key: str) -> Submitted:
    outcome = await provider.submit(spec(prompt=prompt), key)
    assert isinstance(outcome, Submitted)
    return outcome


async def finish_all(
    provider: ComfyUIProvider, clock: HandClock, handles: dict[str, dict[str, Any]]
) -> dict[str, Finished]:
    """Poll every job, moving the clock one run at a time, until each has finished (bounded)."""
    done: dict[str, Finished] = {}
    for _ in range(2 * len(handles) + 2):
        for name, handle in handles.items():
            if name not in done:
                polled = await provider.poll(handle)
                if isinstance(polled, Finished):
                    done[name] = polled
        if len(done) == len(handles):
            return done
        clock.now += RUN
    raise AssertionError(f"not finished: {sorted(set(handles) - set(done))}")


async def test_a_job_lost_by_a_restart_moves_to_the_free_server_and_runs_once() -> None:
    clock = HandClock()
    with server(clock) as one, server(clock) as two:
        provider = provider_for(one, two)
        first = await submitted(provider, "first", "k1")  # one: running
        second = await submitted(provider, "second", "k2")  # two: running
        third = await submitted(provider, "third", "k3")  # one: queued behind "first"
        assert [s.handle["server"] for s in (first, second, third)] == [
            one.base_url,
            two.base_url,
            one.base_url,
        ]
        one.state.book.restart()  # forgets "first" (running) and "third" (queued)
        clock.now += RUN
        assert isinstance(await provider.poll(second.handle), Finished)  # two is free now

        moved = await provider.poll(third.handle)
        assert isinstance(moved, Pending)
        assert (
            moved.status
            == f"re-sent to {host_of(two.base_url)}: {host_of(one.base_url)} had lost it (restarted?)"
        )
        assert (
            third.remote_id in two.state.book.graphs
            and third.remote_id not in one.state.book.queue_snapshot()
        )

        # wfbatch crashes: a new provider only has the stored handle, which still names server one.
        await provider.aclose()
        provider = provider_for(one, two)
        followed = await provider.poll(third.handle)
        assert isinstance(followed, Pending) and followed.status == "queued or running"
        assert {s.host: s.jobs for s in provider.servers()} == {
            host_of(one.base_url): 0,
            host_of(two.base_url): 1,
        }

        done = await finish_all(provider, clock, {"first": first.handle, "third": third.handle})
        await provider.aclose()
        counts = executions(one, two)
        assert done["third"].metadata["server"] == two.base_url
    # "first" was executing when server one restarted: the one prompt allowed to run twice.
    assert counts == Counter({first.remote_id: 2, second.remote_id: 1, third.remote_id: 1})


async def test_an_unreachable_server_holds_its_jobs_and_a_silent_one_stops_a_resend() -> None:
    clock = HandClock()
    with server(clock) as one, server(clock) as two:
        hosts = host_of(one.base_url), host_of(two.base_url)
        provider = provider_for(one, two)
        first = await submitted(provider, "first", "k1")
        second = await submitted(provider, "second", "k2")
        assert second.handle["server"] == two.base_url
        two.stop()  # the GPU box goes away with "second" on it
        waiting = await provider.poll(second.handle)
        assert isinstance(waiting, Pending)
        assert f"server {hosts[1]} unreachable since" in waiting.status
        assert "cannot be known" in waiting.status
        states = {s.host: (s.up, s.down_since is not None) for s in provider.servers()}
        assert states == {hosts[0]: (True, False), hosts[1]: (False, True)}

        one.state.book.restart()  # "first" is lost too, and server two cannot say it is not there
        held = await provider.poll(first.handle)
        assert isinstance(held, Pending) and "did not answer (may have it)" in held.status
        assert executions(one) == Counter({first.remote_id: 1})  # nothing was sent again
        await provider.aclose()


async def test_history_is_deleted_after_download_and_the_file_still_finds_the_job() -> None:
    clock = HandClock()
    with server(clock) as one:
        provider = provider_for(one)
        job = await submitted(provider, "first", "k1")
        clock.now += RUN
        finished = await provider.poll(job.handle)
        assert isinstance(finished, Finished) and one.state.book.history
        images = await provider.download(finished)
        assert len(images) == 1 and one.state.book.history == {}
        # A crash before the image was written: the stored handle is polled again, with no history.
        await provider.aclose()
        provider = provider_for(one)
        again = await provider.poll(job.handle)
        await provider.aclose()
        assert isinstance(again, Finished) and again.urls == finished.urls
        assert executions(one) == Counter({job.remote_id: 1})


# -- a real daemon ---------------------------------------------------------------------------------


def fleet_env(*base_urls: str) -> dict[str, str]:
    return {
        "WFBATCH_PROVIDER": "comfyui",
        "WFBATCH_COMFYUI__BASE_URL": json.dumps(list(base_urls)),
        "WFBATCH_COMFYUI__POLL_INITIAL": "0.1",
        "WFBATCH_COMFYUI__POLL_MAX": "0.2",
        "WFBATCH_COMFYUI__BACKOFF_INITIAL": "0.1",
        "WFBATCH_INBOX__STABLE_SECONDS": "0.2",
    }


def fast_server() -> RunningSimulator:
    return RunningSimulator(SimOptions(provider="comfyui", latency=(0.15, 0.3), seed=7))


def test_status_shows_each_server_and_the_one_that_is_down() -> None:
    with fast_server() as one, fast_server() as two:
        down_host = host_of(two.base_url)
        env = fleet_env(one.base_url, two.base_url)
        two.stop()
        with running_daemon(env=env) as daemon:
            daemon.drop("c.jsonl", jsonl(*(f"shot {i}" for i in range(3)), size=512))
            daemon.wait_for_jobs(lambda jobs: jobs["done"] == 3, timeout=30)
            servers = daemon.status()["providers"]["comfyui"]["servers"]
            human = daemon.cli("status", columns=100).output
        executed = sum(one.state.book.executions_by_prompt_id.values())
        up_host = host_of(one.base_url)
    assert [(s["host"], s["up"], s["jobs"]) for s in servers] == [(up_host, True, 0), (down_host, False, 0)]
    assert servers[1]["down_since"] is not None and executed == 3
    assert f"comfyui  {up_host} up, 0 jobs" in human
    assert f"comfyui  {down_host} down since " in human


def test_kill_9_twice_and_a_restart_on_two_servers_run_nothing_twice_and_leave_no_history() -> None:
    total = 12
    with fast_server() as one, fast_server() as two:
        with running_daemon(env=fleet_env(one.base_url, two.base_url)) as daemon:
            daemon.drop("c.jsonl", jsonl(*(f"shot {i}" for i in range(total)), size=512))

            def executed() -> int:
                return sum(executions(one, two).values())

            for crash in range(2):
                daemon.wait_until(lambda c=crash: executed() >= 3 + 4 * c, 20, "executions")
                daemon.kill()
                if crash == 0:
                    httpx.post(f"{one.root_url}/_sim/restart").raise_for_status()
                daemon.start()
            daemon.wait_for_jobs(lambda jobs: jobs["done"] == total, timeout=40)
        counts = executions(one, two)
        histories = [dict(s.state.book.history) for s in (one, two)]
        cut_off = one.state.book.stats()["cut_off"]  # what was executing when it restarted
    twice = [pid for pid, n in counts.items() if n > 1]
    assert len(counts) == total and twice in ([], cut_off), counts
    assert histories == [{}, {}]  # every entry deleted once its image was downloaded


class TwoGpus(FakeDaemon):
    """The fake daemon's status, plus a ComfyUI provider with one server up and one down."""

    async def status(self) -> Status:
        status = await super().status()
        comfyui = ProviderStatus(
            name="comfyui",
            label="comfyui (built-in graph, sd_xl_base_1.0.safetensors at 127.0.0.1:8188, 127.0.0.1:8189)",
            in_flight=2,
            max_in_flight=4,
            servers=[
                ServerStatus(host="127.0.0.1:8188", up=True, jobs=2),
                ServerStatus(host="127.0.0.1:8189", up=False, down_since=1_700_000_000, jobs=1),
            ],
        )
        return status.model_copy(update={"providers": {**status.providers, "comfyui": comfyui}})


async def test_the_tui_header_shows_each_server_at_80x24() -> None:
    app = WfbatchApp(TwoGpus().client(), close_client=True, retry_interval=0.2, status_interval=0.2,
                     graphics=False)
    async with app.run_test(size=(80, 24)):
        await wait_until(lambda: app.current_mode == "main" and app.main_screen.status is not None)
        header = app.main_screen.query_one(StatusHeader)
        lines = header.render().plain.splitlines()
    servers = [line for line in lines if "servers:" in line]
    assert len(servers) == 1 and max(len(line) for line in lines) <= 80
    assert "127.0.0.1:8188 up, 2 jobs" in servers[0] and "127.0.0.1:8189 down since " in servers[0]
