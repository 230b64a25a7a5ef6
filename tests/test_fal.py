"""The fal.ai provider (providers.md §2): exact requests and fal's answer shapes through
httpx.MockTransport, then the real engine and `wfbatch run` against `wfbatch sim --provider fal`
over loopback."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image as PILImage
from pydantic import SecretStr

from tests.conftest_sim import TEST_KEY, CountingGate
from wfbatch.core.models import JobSpec
from wfbatch.core.parsing import parse_prompt_bytes
from wfbatch.core.states import Execution, JobState
from wfbatch.engine.intake.ingest import ingest
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.home import HomeLayout
from wfbatch.providers.base import Finished, Pending, Submitted
from wfbatch.providers.errors import OutOfCredits, Permanent
from wfbatch.providers.fal.client import FalConfigError, FalProvider
from wfbatch.providers.fal.settings import FalSettings
from wfbatch.settings import Settings, load_settings
from wfbatch.sim import SIM_PROVIDERS, RunningSimulator, SimOptions
from wfbatch.store import Reuse, Store

BASE = "https://queue.example"
REFUSE = "FORBIDDEN-SUBJECT"
LOCKED = "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing."


def spec(**overrides: Any) -> JobSpec:
    values: dict[str, Any] = {
        "provider": "fal",
        "prompt": "a lighthouse at dusk",
        "negative_prompt": None,
        "model": None,
        "width": 768,
        "height": 512,
        "seed": 1234,
        "variant": 0,
    }
    values.update(overrides)
    return JobSpec(**values)


def provider_with(handler: Callable[[httpx.Request], httpx.Response], **overrides: Any) -> FalProvider:
    values: dict[str, Any] = {"api_key": SecretStr(TEST_KEY), "base_url": BASE}
    values.update(overrides)
    return FalProvider(FalSettings(**values), CountingGate(), transport=httpx.MockTransport(handler))


class Routes:
    """A MockTransport handler answering by (method, path) and remembering what was sent."""

    def __init__(self, answers: dict[tuple[str, str], httpx.Response]) -> None:
        self.answers = answers
        self.sent: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return self.answers[(request.method, request.url.path)]


def queued(request_id: str = "req-1", root: str = f"{BASE}/fal-ai/flux/requests/req-1") -> httpx.Response:
    body = {
        "status": "IN_QUEUE",
        "request_id": request_id,
        "queue_position": 0,
        "response_url": root,
        "status_url": f"{root}/status",
        "cancel_url": f"{root}/cancel",
    }
    return httpx.Response(200, json=body, headers={"x-fal-request-id": request_id})


# -- what is sent, and the handle ------------------------------------------------------------------


async def test_submit_body_and_the_urls_used_as_given() -> None:
    # The answer's URLs differ from the submit path (subpath endpoint): they are used verbatim.
    routes = Routes({("POST", "/fal-ai/flux/dev"): queued()})
    provider = provider_with(routes, model="fal-ai/flux/dev")
    try:
        job = spec(negative_prompt="boats", params={"enable_safety_checker": False, "num_inference_steps": 4})
        outcome = await provider.submit(job, "ignored")
    finally:
        await provider.aclose()
    sent = routes.sent[0]
    assert (sent.method, str(sent.url)) == ("POST", f"{BASE}/fal-ai/flux/dev")
    assert sent.headers["authorization"] == f"Key {TEST_KEY}"
    assert json.loads(sent.content) == {
        "prompt": "a lighthouse at dusk",
        "image_size": {"width": 768, "height": 512},
        "seed": 1234,
        "num_images": 1,
        "output_format": "png",
        "negative_prompt": "boats",
        "enable_safety_checker": False,
        "num_inference_steps": 4,
    }
    assert isinstance(outcome, Submitted)
    assert (outcome.remote_id, outcome.request_id) == ("req-1", "req-1")
    assert outcome.handle["status_url"] == f"{BASE}/fal-ai/flux/requests/req-1/status"
    assert outcome.handle["cancel_url"] == f"{BASE}/fal-ai/flux/requests/req-1/cancel"


async def test_poll_queue_position_then_result() -> None:
    root = f"{BASE}/fal-ai/flux/requests/req-1"
    handle = {"request_id": "req-1", "status_url": f"{root}/status", "response_url": root, "cancel_url": ""}
    status = {"status": "IN_QUEUE", "request_id": "req-1", "queue_position": 3}
    routes = Routes({("GET", "/fal-ai/flux/requests/req-1/status"): httpx.Response(200, json=status)})
    provider = provider_with(routes)
    try:
        pending = await provider.poll(handle)
        assert isinstance(pending, Pending) and pending.status == "IN_QUEUE (queue position 3)"
        routes.answers[("GET", "/fal-ai/flux/requests/req-1/status")] = httpx.Response(
            200, json={"status": "COMPLETED", "request_id": "req-1", "logs": None}
        )
        image = {"url": "https://v3.fal.media/files/x.jpg", "width": 768, "height": 512}
        routes.answers[("GET", "/fal-ai/flux/requests/req-1")] = httpx.Response(
            200, json={"images": [image], "seed": 1234}, headers={"x-fal-request-id": "req-1"}
        )
        finished = await provider.poll(handle)
    finally:
        await provider.aclose()
    assert isinstance(finished, Finished)
    assert finished.urls == ("https://v3.fal.media/files/x.jpg",)
    assert finished.credits_used == 0.003  # schnell: 0.39 MP, billed as one
    assert finished.metadata["seed"] == 1234


def policy(status: int = 422) -> httpx.Response:
    detail = [
        {"loc": ["body", "prompt"], "msg": "flagged by a content checker", "type": "content_policy_violation"}
    ]
    return httpx.Response(status, json={"detail": detail}, headers={"x-fal-request-id": "req-9"})


async def test_content_policy_on_submit_and_on_the_result_is_final() -> None:
    provider = provider_with(Routes({("POST", "/fal-ai/flux/schnell"): policy()}))
    with pytest.raises(Permanent, match=r"content_policy_violation.*flagged by a content checker") as caught:
        await provider.submit(spec(), "k")
    await provider.aclose()
    assert (caught.value.status, caught.value.request_id) == (422, "req-9")

    root = f"{BASE}/fal-ai/flux/requests/req-9"
    completed = {
        "status": "COMPLETED",
        "request_id": "req-9",
        "error": "flagged",
        "error_type": "content_policy_violation",
    }
    routes = Routes(
        {
            ("GET", "/fal-ai/flux/requests/req-9/status"): httpx.Response(200, json=completed),
            ("GET", "/fal-ai/flux/requests/req-9"): policy(),
        }
    )
    provider = provider_with(routes)
    handle = {"request_id": "req-9", "status_url": f"{root}/status", "response_url": root}
    with pytest.raises(Permanent, match="content_policy_violation"):
        await provider.poll(handle)
    await provider.aclose()


async def test_locked_account_is_out_of_credit() -> None:
    locked = httpx.Response(403, json={"detail": LOCKED})
    provider = provider_with(Routes({("POST", "/fal-ai/flux/schnell"): locked}))
    with pytest.raises(OutOfCredits, match="Exhausted balance"):
        await provider.submit(spec(), "k")
    await provider.aclose()


@pytest.mark.parametrize(
    ("answer", "accepted"),
    [
        (httpx.Response(200, json={"status": "OK"}), True),
        (httpx.Response(202, json={"status": "CANCELLATION_REQUESTED"}), True),
        (httpx.Response(400, json={"status": "ALREADY_COMPLETED"}), False),
        (httpx.Response(404, json={"status": "NOT_FOUND"}), False),
        (httpx.Response(200, json={"success": True}), True),
        (httpx.Response(200, json={"success": False}), False),
        (httpx.Response(202), True),
    ],
)
async def test_cancel_accepts_all_three_answer_shapes(answer: httpx.Response, accepted: bool) -> None:
    routes = Routes({("PUT", "/fal-ai/flux/requests/r/cancel"): answer})
    provider = provider_with(routes)
    try:
        assert (
            await provider.cancel({"request_id": "r", "cancel_url": f"{BASE}/fal-ai/flux/requests/r/cancel"})
            is accepted
        )
    finally:
        await provider.aclose()
    assert routes.sent[0].headers["authorization"] == f"Key {TEST_KEY}"


async def test_costs_override_the_table_and_a_key_is_needed() -> None:
    provider = provider_with(Routes({}), costs={"fal-ai/flux/schnell": 0.01})
    assert await provider.estimate(spec()) == 0.01
    await provider.aclose()
    provider = provider_with(Routes({}))
    assert await provider.estimate(spec(width=2048, height=2048)) == 0.015  # 4.2 MP -> 5
    assert await provider.estimate(spec(model="someone/else")) is None
    await provider.aclose()
    with pytest.raises(FalConfigError, match="WFBATCH_FAL__API_KEY"):
        FalProvider(FalSettings(), CountingGate())


# -- the real engine over loopback -----------------------------------------------------------------


def fal_sim(**overrides: Any) -> RunningSimulator:
    values: dict[str, Any] = {"provider": "fal", "latency": (0.0, 0.02), "seed": 7, "api_key": TEST_KEY}
    values.update(overrides)
    return RunningSimulator(SimOptions(**values))


def fal_config(home: Path, sim: RunningSimulator, **fal: Any) -> Settings:
    values: dict[str, Any] = {
        "api_key": TEST_KEY,
        "base_url": sim.base_url,
        "poll_initial": 0.02,
        "poll_max": 0.05,
        "backoff_initial": 0.02,
        "backoff_max": 0.05,
    }
    values.update(fal)
    return load_settings(home, provider="fal", fal=values)


def lines(count: int, refuse: int | None = None) -> bytes:
    sizes = [(64, 64), (96, 64), (64, 80)]
    rows = [
        {
            "prompt": f"{'a ' + REFUSE if i == refuse else 'a lighthouse'} number {i}",
            "width": sizes[i % 3][0],
            "height": sizes[i % 3][1],
            "seed": 100 + i,
        }
        for i in range(count)
    ]
    return "\n".join(json.dumps(row) for row in rows).encode()


async def enqueue(store: Store, layout: HomeLayout, raw: bytes) -> str:
    ingested = await ingest(
        store, layout, parse_prompt_bytes(raw, "shots.jsonl"), raw, "fal", reuse=Reuse.NEVER
    )
    return ingested.batch.id


async def test_twelve_prompts_one_refused_over_loopback(store: Store, layout: HomeLayout, home: Path) -> None:
    raw = lines(12, refuse=5)
    with fal_sim(moderation_marker=REFUSE, concurrency=2) as sim:
        batch_id = await enqueue(store, layout, raw)
        await Engine(store, fal_config(home, sim), layout, batch_ids=[batch_id]).run_until_idle()
        book = sim.state.book
        stats = sim.state.stats()["fal"]
        seen = {(r.prompt, r.seed, r.width, r.height) for r in book.requests.values()}
    jobs = await store.jobs.jobs_for_batch(batch_id)
    done = [job for job in jobs if job.state is JobState.DONE]
    failed = [job for job in jobs if job.state is JobState.FAILED]
    assert (len(done), len(failed)) == (11, 1)
    assert failed[0].attempts == 1 and REFUSE in failed[0].spec.prompt
    assert failed[0].error_message is not None and "content_policy_violation" in failed[0].error_message
    assert failed[0].error_message.endswith(book.requests[failed[0].remote_id or ""].error or "?")
    assert failed[0].error_request_id == failed[0].remote_id and failed[0].remote_id in book.requests
    assert set(stats["executions_by_prompt"].values()) == {1}  # one execution per prompt
    assert stats["peak_in_progress"] <= 2
    for job in jobs:  # the prompt and the seed reached the server unchanged
        assert (job.spec.prompt, job.spec.seed, job.spec.width, job.spec.height) in seen
    output = Path((await store.batches.get_batch(batch_id)).output_dir)
    for job in done:
        assert job.file is not None
        with PILImage.open(io.BytesIO((output / job.file).read_bytes())) as image:
            assert image.size == (job.spec.width, job.spec.height)
        assert job.credits == 0.003


async def test_a_stricter_server_is_waited_for(store: Store, layout: HomeLayout, home: Path) -> None:
    with fal_sim(rpm=3, window=0.5) as sim:
        batch_id = await enqueue(store, layout, lines(6))
        config = fal_config(home, sim, max_in_flight=4, rate_window_seconds=0.5)
        reason = await Engine(store, config, layout, batch_ids=[batch_id]).run_until_idle()
        stats = sim.state.stats()["fal"]
    assert reason.code == "done"
    # The simulator counts arrivals after it announced a wait; a request already on the wire when the
    # 429 was answered (up to one per other slot) arrives after the announcement through no fault of
    # the client. Anything sent after the client saw the 429 would add one per retry and exceed this.
    assert stats["rate_limited"] >= 1 and stats["early_retries"] <= 4 - 1
    assert set(stats["executions_by_prompt"].values()) == {1}


async def test_a_lost_submit_answer_is_flagged_as_a_possible_duplicate_charge(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with fal_sim() as sim:
        sim.state.queue_fault("lost_5xx", route="submit", count=1)
        batch_id = await enqueue(store, layout, lines(1))
        reason = await Engine(store, fal_config(home, sim), layout, batch_ids=[batch_id]).run_until_idle()
        stats = sim.state.stats()["fal"]
    assert reason.code == "done"
    (job,) = await store.jobs.jobs_for_batch(batch_id)
    assert stats["executions"] == 2  # fal has no idempotency: the re-send ran again...
    assert (
        job.possible_duplicate_charge is not None
        and "fal has no idempotency" in job.possible_duplicate_charge
    )


async def test_a_start_that_could_not_connect_is_a_first_send_again_not_a_possible_duplicate(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    # fal has no idempotency: a start whose answer was lost is flagged when sent again. One that
    # could not even connect reached nobody, so its retry is an ordinary first send.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sim = fal_sim(port=port)
    base_url = f"http://127.0.0.1:{port}{SIM_PROVIDERS['fal'].api_prefix}"
    batch_id = await enqueue(store, layout, lines(1))
    config = load_settings(
        home,
        provider="fal",
        fal={
            "api_key": TEST_KEY, "base_url": base_url, "poll_initial": 0.02, "poll_max": 0.05,
            "backoff_initial": 0.05, "backoff_max": 0.1, "max_attempts": 100, "unreachable_after": 100,
        },
    )
    engine = asyncio.create_task(Engine(store, config, layout, batch_ids=[batch_id]).run_until_idle())
    try:
        for _ in range(250):  # bounded: 5 s for the first start to be refused
            (job,) = await store.jobs.jobs_for_batch(batch_id)
            if job.attempts >= 1 and job.state is JobState.RETRYING:
                break
            await asyncio.sleep(0.02)
        assert job.state is JobState.RETRYING and job.execution is Execution.NONE
        assert job.reserved is None and job.error_message is not None
        with sim:
            reason = await asyncio.wait_for(engine, 30)
            stats = sim.state.stats()["fal"]
    finally:
        engine.cancel()
    assert reason.code == "done"
    (job,) = await store.jobs.jobs_for_batch(batch_id)
    assert job.state is JobState.DONE and job.possible_duplicate_charge is None
    assert stats["executions"] == 1


def wfbatch(home: Path, sim: RunningSimulator, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "WFBATCH_HOME": str(home),
        "WFBATCH_PROVIDER": "fal",
        "WFBATCH_FAL__API_KEY": TEST_KEY,
        "WFBATCH_FAL__BASE_URL": sim.base_url,
        "WFBATCH_FAL__POLL_INITIAL": "0.02",
        "WFBATCH_FAL__POLL_MAX": "0.05",
    }
    return subprocess.run(
        [sys.executable, "-m", "wfbatch", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_credit_for_five_of_eight_then_top_up_with_wfbatch_run(tmp_path: Path) -> None:
    prompts = tmp_path / "eight.jsonl"
    prompts.write_bytes(lines(8))
    home = tmp_path / "home"
    with fal_sim(quota=5, concurrency=2) as sim:
        first = wfbatch(home, sim, "run", str(prompts), "--json")
        assert first.returncode == 3, first.stderr
        out = json.loads(first.stdout)
        assert (out["done"], out["queued"]) == (5, 3)
        assert (
            "credit" in out["stop_reason"]["message"] and "Exhausted balance" in out["stop_reason"]["message"]
        )
        assert TEST_KEY not in first.stdout + first.stderr
        sim.state.top_up(10)
        second = wfbatch(home, sim, "run", str(prompts), "--json")
        stats = sim.state.stats()["fal"]
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["done"] == 8
    assert stats["executions"] == 8 and set(stats["executions_by_prompt"].values()) == {1}


async def test_hand_cancel_reaches_fal(store: Store, layout: HomeLayout, home: Path) -> None:
    with fal_sim(latency=(5.0, 5.0), concurrency=1) as sim:
        provider = FalProvider(fal_config(home, sim).fal, CountingGate())
        try:
            running = await provider.submit(spec(), "k")
            waiting = await provider.submit(spec(prompt="second"), "k2")
            assert isinstance(running, Submitted) and isinstance(waiting, Submitted)
            polled = await provider.poll(waiting.handle)
            assert isinstance(polled, Pending) and polled.status == "IN_QUEUE (queue position 0)"
            assert await provider.cancel(waiting.handle) is True
            assert await provider.cancel(running.handle) is True
            assert await provider.cancel(running.handle) is False  # already completed
            with pytest.raises(Permanent, match="cancelled"):
                await provider.poll(running.handle)
        finally:
            await provider.aclose()
        assert sim.state.stats()["fal"]["canceled"] == 2
