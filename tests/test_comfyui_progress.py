"""ComfyUI progress over `/ws` (providers.md §7.5): the provider against the simulator on loopback
(steps while it runs, finished by `/history`), a server without `/ws` (polling alone, one log
line), a hostile WebSocket server (junk, hostile numbers, an oversize frame), and the engine's
board that turns it into at most one event per job and sample."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from tests.conftest_sim import CountingGate, job_spec
from tests.daemon_harness import jsonl, running_daemon
from tests.deadlines import patience
from wfbatch.core.progress import JobProgress
from wfbatch.engine.loop.progress import ProgressBoard
from wfbatch.protocol import Event, ProgressEvent
from wfbatch.providers.base import Finished, Pending, RemoteHandle, Submitted
from wfbatch.providers.comfyui import progress as listener
from wfbatch.providers.comfyui.client import ComfyUIProvider
from wfbatch.providers.comfyui.progress import ServerProgress, ws_url
from wfbatch.providers.comfyui.settings import ComfyUISettings
from wfbatch.sim import RunningSimulator, SimOptions

LOGGER = "wfbatch.providers.comfyui"


def comfy(sim: RunningSimulator) -> ComfyUIProvider:
    settings = ComfyUISettings(base_url=sim.base_url, poll_initial=0.05, poll_max=0.1)
    return ComfyUIProvider(settings, CountingGate())


async def run_to_the_end(
    provider: ComfyUIProvider, handle: RemoteHandle
) -> tuple[Finished, list[JobProgress | None]]:
    """Poll as the engine does, noting the progress between polls (bounded: 300 polls)."""
    seen: list[JobProgress | None] = []
    for _ in range(300):
        result = await provider.poll(handle)
        if isinstance(result, Finished):
            return result, seen
        assert isinstance(result, Pending)
        seen.append(provider.progress(handle))
        await asyncio.sleep(0.05)
    raise AssertionError(f"never finished; progress seen: {seen[-5:]}")


def test_hostile_numbers_and_names_make_progress_vanish_never_lie() -> None:
    assert JobProgress.of(step=12, steps=20, node="KSampler").text() == "step 12/20 (KSampler)"  # type: ignore[union-attr]
    for step, steps in [
        (-1, 20),
        (21, 20),
        (float("nan"), 20),
        (10**30, 10**31),
        (True, 20),
        (3, 0),
        ("3", 20),
        (3.5, 20),
        (None, 20),
        (3, None),
    ]:
        progress = JobProgress.of(step=step, steps=steps, phase="running")
        assert progress == JobProgress(phase="running"), (step, steps)
    assert JobProgress.of(step=3.0, steps=20.0) == JobProgress(step=3, steps=20)
    named = JobProgress.of(node="\x1b[31mEVIL\x1b[0m\n" + "x" * 500)
    assert named is not None and named.node is not None
    assert "\x1b" not in named.node and "\n" not in named.node and len(named.node) == 64
    assert JobProgress.of(node=["KSampler"], phase=7) is None


async def test_the_provider_shows_steps_then_finishes_by_history() -> None:
    with RunningSimulator(SimOptions(provider="comfyui", latency=(2.0, 2.0), seed=3)) as sim:
        provider = comfy(sim)
        try:
            submitted = await provider.submit(job_spec(provider="comfyui"), "key-1")
            assert isinstance(submitted, Submitted)
            finished, seen = await run_to_the_end(provider, submitted.handle)
            assert provider.progress(submitted.handle) is None  # forgotten once finished
            assert sim.state.requests_by_route["ws"] == 1
        finally:
            await provider.aclose()
    steps = [p for p in seen if p is not None and p.step is not None]
    assert len(steps) >= 3, seen
    assert all(p.steps == 20 and p.node == "KSampler" and p.phase == "running" for p in steps)
    assert [p.step for p in steps] == sorted(p.step for p in steps if p.step is not None)
    assert finished.urls and finished.remote_id == submitted.remote_id


async def test_a_server_without_ws_finishes_by_polling_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    with RunningSimulator(SimOptions(provider="comfyui", latency=(2.0, 2.0), comfyui_ws=False)) as sim:
        provider = comfy(sim)
        try:
            submitted = await provider.submit(job_spec(provider="comfyui"), "key-2")
            assert isinstance(submitted, Submitted)
            finished, seen = await run_to_the_end(provider, submitted.handle)
            tries = sim.state.requests_by_route["ws"]
        finally:
            await provider.aclose()
    assert finished.urls and seen and all(p is None for p in seen)
    told = [r for r in caplog.records if "no progress from" in r.getMessage()]
    assert tries >= 2 and len(told) == 1, (tries, [r.getMessage() for r in caplog.records])
    assert "HTTP 403" in told[0].getMessage() and told[0].levelno == logging.INFO


# -- a hostile server ------------------------------------------------------------------------------


def progress_frame(prompt_id: str, value: Any, maximum: Any, node: Any = "3") -> str:
    return json.dumps(
        {"type": "progress", "data": {"value": value, "max": maximum, "prompt_id": prompt_id, "node": node}}
    )


JUNK: list[str | bytes] = [
    b"\x00\x00\x00\x01\x00\x00\x00\x02not really a png",
    b"",
    "not json {",
    "[1, 2, 3]",
    '{"type": "progress", "data": "a string"}',
    '{"type": "weird", "data": {"prompt_id": "p"}}',
    '{"type": "progress", "data": ' + "[" * 100_000 + "]" * 100_000 + "}",
    progress_frame("someone-else", 5, 10),
    progress_frame("p", -1, 20),
    progress_frame("p", float("nan"), 20),
    progress_frame("p", 10**30, 10**31),
    progress_frame("p", 30, 20),
    progress_frame("p", True, 20),
    progress_frame("p", 3, 20, node="\x1b]0;owned\x07" + "x" * 5000),
    '{"type": "execution_error", "data": {"prompt_id": "p", "node_type": 42}}',
    progress_frame("p", 4, 20),
]


class Hostile:
    """A WebSocket server that sends `JUNK` on its first connection, then (when told) a frame
    over the cap; every later connection gets one good step."""

    def __init__(self) -> None:
        self.connections = 0
        self.origins: list[str | None] = []
        self.go_big = asyncio.Event()

    async def handler(self, socket: ServerConnection) -> None:
        self.connections += 1
        assert socket.request is not None
        self.origins.append(socket.request.headers.get("Origin"))
        if self.connections == 1:
            for frame in JUNK:
                await socket.send(frame)
            await self.go_big.wait()
            await socket.send("x" * (listener.FRAME_CAP + 1))
        else:
            await socket.send(progress_frame("p", 7, 20))
        await socket.wait_closed()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        async with serve(self.handler, "127.0.0.1", 0, max_size=None) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            yield f"http://127.0.0.1:{port}"


async def wait_for(check: Any, what: str) -> None:
    deadline = time.monotonic() + patience(10)
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_hostile_frames_are_skipped_and_an_oversize_one_costs_a_reconnect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hostile = Hostile()
    async with hostile.running() as server:
        feed = ServerProgress(server, "me", {"3": "KSampler"})
        feed.watch("p")
        try:
            await wait_for(
                lambda: feed.of("p") == JobProgress(step=4, steps=20, node="KSampler", phase="running"),
                "the last good step",
            )
            assert feed.of("someone-else") is None
            hostile.go_big.set()
            await wait_for(
                lambda: (
                    hostile.connections == 2
                    and feed.of("p") is not None
                    and feed.of("p") == JobProgress(step=7, steps=20, node="KSampler", phase="running")
                ),
                "a reconnect",
            )
        finally:
            await feed.aclose()
    assert hostile.origins == [None, None]  # §7.1: no Origin header
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@asynccontextmanager
async def no_socket(_url: str) -> AsyncIterator[None]:
    """An opener whose socket never opens: frames are fed by hand to a watched prompt."""
    await asyncio.Event().wait()
    yield


async def test_one_frame_at_a_time_an_error_stays_an_error() -> None:
    feed = ServerProgress("http://127.0.0.1:1", "me", {"3": "KSampler", "8": "VAEDecode"}, opener=no_socket)
    feed.watch("p")
    for frame in [
        '{"type": "execution_start", "data": {"prompt_id": "p"}}',
        progress_frame("p", 20, 20),
        '{"type": "executing", "data": {"node": "8", "prompt_id": "p"}}',
    ]:
        feed.handle(frame)
    assert feed.of("p") == JobProgress(node="VAEDecode", phase="running")
    feed.handle('{"type": "execution_error", "data": {"prompt_id": "p", "node_type": "VAEDecode"}}')
    feed.handle('{"type": "executing", "data": {"node": null, "prompt_id": "p"}}')
    assert feed.of("p") == JobProgress(node="VAEDecode", phase="failed")
    feed.forget("p")
    assert feed.of("p") is None
    await feed.aclose()
    assert ws_url("https://gpu.example/comfy/", "c1") == "wss://gpu.example/comfy/ws?clientId=c1"


async def test_an_older_servers_progress_without_prompt_id_counts_for_the_running_prompt() -> None:
    # ComfyUI before progress carried prompt_id/node sent {"value", "max"} only, to the socket of
    # the running prompt's client_id; execution_start and executing did name the prompt.
    feed = ServerProgress("http://127.0.0.1:1", "me", {"3": "KSampler"}, opener=no_socket)
    feed.watch("p")
    feed.handle('{"type": "execution_start", "data": {"prompt_id": "p"}}')
    feed.handle('{"type": "executing", "data": {"node": "3", "prompt_id": "p"}}')
    feed.handle('{"type": "progress", "data": {"value": 4, "max": 20}}')
    assert feed.of("p") == JobProgress(step=4, steps=20, node="KSampler", phase="running")
    feed.handle('{"type": "executing", "data": {"node": null, "prompt_id": "p"}}')
    feed.handle('{"type": "progress", "data": {"value": 5, "max": 20}}')  # not p's: p has ended
    assert feed.of("p") == JobProgress(step=4, steps=20, phase="finished")
    await feed.aclose()


# -- the engine's board ----------------------------------------------------------------------------


class Told:
    """A provider whose progress is whatever the test sets (only `progress` is asked)."""

    def __init__(self) -> None:
        self.now: JobProgress | None = None

    def progress(self, handle: RemoteHandle) -> JobProgress | None:
        return self.now


async def test_the_board_publishes_a_change_once_and_forgets_a_job_after_its_polling() -> None:
    events: list[Event] = []
    board = ProgressBoard(events.append, period=3600)  # sampled by hand below
    told = Told()
    with board.watching(5, "b1", told, {"prompt_id": "x"}):  # type: ignore[arg-type]
        for value in [
            None,
            JobProgress(step=1, steps=9),
            JobProgress(step=1, steps=9),
            JobProgress(step=2, steps=9),
            None,
        ]:
            told.now = value
            board.sample()
            assert board.of(5) == value
        told.now = JobProgress(step=3, steps=9)
        board.sample()
    assert board.of(5) is None
    assert [e.progress for e in events if isinstance(e, ProgressEvent)] == [
        JobProgress(step=1, steps=9),
        JobProgress(step=2, steps=9),
        None,
        JobProgress(step=3, steps=9),
    ]
    assert all(isinstance(e, ProgressEvent) and e.id == 5 and e.batch_id == "b1" for e in events)
    await board.aclose()


# -- the daemon ------------------------------------------------------------------------------------


async def until(check: Any, what: str, within: float = 30.0) -> Any:
    """Await `check()` until it is truthy (returned); bounded."""
    for _ in range(int(within / 0.05)):
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_show_the_job_list_and_the_events_carry_a_running_comfyui_jobs_progress() -> None:
    with RunningSimulator(SimOptions(provider="comfyui", latency=(8.0, 8.0))) as sim:
        env = {
            "WFBATCH_PROVIDER": "comfyui",
            "WFBATCH_COMFYUI__BASE_URL": sim.base_url,
            "WFBATCH_COMFYUI__POLL_INITIAL": "0.2",
            "WFBATCH_COMFYUI__POLL_MAX": "0.5",
            "WFBATCH_INBOX__STABLE_SECONDS": "0.2",
        }
        with running_daemon(env=env) as daemon:
            async with daemon.client() as client:
                heard: list[ProgressEvent] = []

                async def listen() -> None:
                    async for event in client.events():
                        if isinstance(event, ProgressEvent):
                            heard.append(event)

                reader = asyncio.create_task(listen())
                daemon.drop("c.jsonl", jsonl("a lighthouse at dusk", size=512))

                async def stepping() -> Any:
                    page = await client.jobs(states=["running"])
                    shown = [j for j in page.items if j.progress is not None and j.progress.step]
                    return shown[0] if shown else None

                running = await until(stepping, "a running job with steps in the job list")
                detail = await client.job(running.id)
                shown = await asyncio.to_thread(daemon.cli, "show", str(running.id))
                await until(lambda: asyncio.sleep(0, heard), "a progress event")
                await until(lambda: asyncio.sleep(0, (daemon.status()["jobs"]["done"] == 1)), "the job done")
                after = await client.job(running.id)
                reader.cancel()
    assert running.progress.steps == 20 and running.progress.node == "KSampler"
    assert detail.progress is not None and detail.progress.steps == 20
    assert "progress" in shown.output and "/20 (KSampler)" in shown.output, shown.output
    assert after.state == "done" and after.progress is None
    ours = [e for e in heard if e.id == running.id]
    assert ours and all(e.batch_id == running.batch_id for e in ours)
    assert any(e.progress is not None and e.progress.steps == 20 for e in ours)
    # Coalesced: one event per change at most, never the same progress twice in a row.
    values = [e.progress for e in ours]
    assert all(a != b for a, b in itertools.pairwise(values)) and len(values) <= 25


async def test_a_socket_with_nothing_to_watch_closes_after_lingering(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listener, "IDLE_LINGER", 0.2)
    monkeypatch.setattr(listener, "RECV_TICK", 0.05)
    with RunningSimulator(SimOptions(provider="comfyui", latency=(0.0, 0.0))) as sim:
        feed = ServerProgress(sim.base_url, "me", {})
        feed.watch("p")
        try:
            await wait_for(lambda: feed.connected, "the socket")
            feed.forget("p")
            await wait_for(
                lambda: not feed.connected and feed._task is not None and feed._task.done(),
                "the listener to stop by itself",
            )
            feed.watch("q")  # a new prompt: listening again
            await wait_for(lambda: feed.connected, "the socket again")
        finally:
            await feed.aclose()
        assert sim.state.requests_by_route["ws"] == 2
