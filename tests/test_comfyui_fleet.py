"""ComfyUI with several servers (providers.md §7, issue 15 "Several GPUs"): a job lost by a
restarted server moves to another once every server answered without it, a move survives a wfbatch
crash (found again by its deterministic prompt_id), an unreachable server's jobs wait, and history
is deleted after a download. The real provider against two `wfbatch sim --provider comfyui` servers
over loopback, their time driven by a hand-moved clock."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.conftest_sim import CountingGate
from tests.test_comfyui import spec
from wfbatch.providers.base import Finished, Pending, Submitted
from wfbatch.providers.comfyui import ComfyUIProvider
from wfbatch.providers.comfyui.client import host_of
from wfbatch.settings import ComfyUISettings
from wfbatch.sim import RunningSimulator, SimOptions

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
        total.update(sim.state.comfyui.executions_by_prompt_id)
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
        one.state.comfyui.restart()  # forgets "first" (running) and "third" (queued)
        clock.now += RUN
        assert isinstance(await provider.poll(second.handle), Finished)  # two is free now

        moved = await provider.poll(third.handle)
        assert isinstance(moved, Pending)
        assert (
            moved.status
            == f"re-sent to {host_of(two.base_url)}: {host_of(one.base_url)} had lost it (restarted?)"
        )
        assert (
            third.remote_id in two.state.comfyui.graphs
            and third.remote_id not in one.state.comfyui.queue_snapshot()
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

        one.state.comfyui.restart()  # "first" is lost too, and server two cannot say it is not there
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
        assert isinstance(finished, Finished) and one.state.comfyui.history
        images = await provider.download(finished)
        assert len(images) == 1 and one.state.comfyui.history == {}
        # A crash before the image was written: the stored handle is polled again, with no history.
        await provider.aclose()
        provider = provider_for(one)
        again = await provider.poll(job.handle)
        await provider.aclose()
        assert isinstance(again, Finished) and again.urls == finished.urls
        assert executions(one) == Counter({job.remote_id: 1})
