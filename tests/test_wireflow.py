"""The real WireflowProvider against the simulator over loopback HTTP, plus the tolerant parser
against the exact example bodies of providers.md §1 (through httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from PIL import Image as PILImage
from pydantic import SecretStr

from tests.conftest_sim import TEST_KEY, CountingGate, fast_options, job_spec, wireflow_settings
from tests.deadlines import patience
from wfbatch.providers.base import Finished, Pending, RequestKind, Submitted
from wfbatch.providers.errors import AuthenticationFailed, OutOfCredits, Permanent, RateLimited, Transient
from wfbatch.providers.registry import traits
from wfbatch.providers.wireflow import parse
from wfbatch.providers.wireflow.client import WireflowConfigError, WireflowProvider
from wfbatch.providers.wireflow.settings import WireflowSettings
from wfbatch.sim import RunningSimulator

START, POLL, OTHER = RequestKind.START, RequestKind.POLL, RequestKind.OTHER


class RecordingTransport(httpx.AsyncHTTPTransport):
    """The real network transport, remembering each request's method, URL and headers."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await super().handle_async_request(request)


@pytest.fixture
def sim_factory() -> Iterator[Callable[..., RunningSimulator]]:
    started: list[RunningSimulator] = []

    def start(**overrides: Any) -> RunningSimulator:
        sim = RunningSimulator(fast_options(**overrides))
        sim.start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def sim(sim_factory: Callable[..., RunningSimulator]) -> RunningSimulator:
    return sim_factory()


@pytest.fixture
async def provider_factory() -> AsyncIterator[Callable[..., tuple[WireflowProvider, CountingGate]]]:
    made: list[WireflowProvider] = []

    def make(
        sim: RunningSimulator, *, transport: httpx.AsyncBaseTransport | None = None, **overrides: Any
    ) -> tuple[WireflowProvider, CountingGate]:
        gate = CountingGate()
        provider = WireflowProvider(wireflow_settings(sim, **overrides), gate, transport=transport)
        made.append(provider)
        return provider, gate

    yield make
    for provider in made:
        await provider.aclose()


async def finish(
    provider: WireflowProvider, submitted: Submitted | Finished, within: float = patience(5.0)
) -> Finished:
    if isinstance(submitted, Finished):
        return submitted
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        outcome = await provider.poll(submitted.handle)
        if isinstance(outcome, Finished):
            return outcome
        assert isinstance(outcome, Pending) and outcome.status == "RUNNING"
        await asyncio.sleep(0.03)
    raise AssertionError("execution did not finish in time")


def assert_png(data: bytes) -> None:
    assert PILImage.open(io.BytesIO(data)).format == "PNG"


# -- happy paths in the three modes ---------------------------------------------------------------


async def test_execute_mode(sim: RunningSimulator, provider_factory: Any) -> None:
    transport = RecordingTransport()
    provider, gate = provider_factory(sim, transport=transport)
    assert provider.label.startswith("wireflow (workflow wf_demo at 127.0.0.1:")
    assert traits("wireflow").starts_count_as_requests is False

    spec = job_spec("a lighthouse in fog", negative_prompt="boats", seed=99, params={"steps": 4})
    submitted = await provider.submit(spec, "job-1")
    assert isinstance(submitted, Submitted) and submitted.http_status == 201
    assert submitted.request_id and submitted.request_id.startswith("req_")
    finished = await finish(provider, submitted)
    assert finished.credits_used == 1
    [image] = await provider.download(finished)
    assert image.media_type == "image/png" and image.metadata["url"] == finished.urls[0]
    assert_png(image.data)

    execution = sim.state.book.executions[submitted.remote_id]
    assert (execution.prompt, execution.negative_prompt, execution.seed) == (
        "a lighthouse in fog",
        "boats",
        99,
    )
    assert (execution.width, execution.height) == (512, 384)

    await provider.submit(job_spec("a second one"), "job-2")  # the graph is fetched once
    assert gate.acquired[OTHER] == 1 and gate.acquired[START] == 2
    assert gate.acquired[POLL] == sim.state.stats()["requests"]["by_route"]["poll"]
    assert len(gate.observed) == sum(gate.acquired.values())

    execute = [r for r in transport.requests if r.url.path.endswith("/execute")]
    assert [r.headers["Idempotency-Key"] for r in execute] == ["job-1", "job-2"]
    assert json.loads(execute[0].content)["nodes"][2]["data"]["params"]["steps"] == 4
    assert all(
        r.headers["Authorization"] == f"Bearer {TEST_KEY}"
        for r in transport.requests
        if "/api/v1/" in r.url.path
    )
    downloads = [r for r in transport.requests if "/api/v1/" not in r.url.path]
    assert downloads and all("Authorization" not in r.headers for r in downloads)


async def test_run_mode(sim: RunningSimulator, provider_factory: Any) -> None:
    provider, gate = provider_factory(sim, mode="run", prompt_node_id="node-prompt", seed_node_id="node-seed")
    submitted = await provider.submit(job_spec("a cat", seed=5), "job-run")
    assert isinstance(submitted, Submitted) and submitted.http_status == 202
    finished = await finish(provider, submitted)
    [image] = await provider.download(finished)
    assert_png(image.data)
    assert sim.state.book.executions[submitted.remote_id].seed == 5
    assert gate.acquired[OTHER] == 0 and gate.acquired[START] == 1


async def test_webhook_mode(sim: RunningSimulator, provider_factory: Any) -> None:
    transport = RecordingTransport()
    provider, gate = provider_factory(sim, mode="webhook", webhook_id="wh_demo", transport=transport)
    submitted = await provider.submit(job_spec("a dog", seed=8), "job-hook")
    assert isinstance(submitted, Submitted) and submitted.http_status == 202
    finished = await finish(provider, submitted)
    assert_png((await provider.download(finished))[0].data)
    trigger = next(r for r in transport.requests if r.url.path.endswith("/trigger"))
    assert "Authorization" not in trigger.headers and trigger.headers["Idempotency-Key"] == "job-hook"
    assert json.loads(trigger.content) == {"prompt": "a dog", "seed": 8, "width": 512, "height": 384}
    poll = next(r for r in transport.requests if r.url.path.endswith("/poll"))
    assert poll.headers["Authorization"] == f"Bearer {TEST_KEY}"
    assert gate.acquired[START] == 1


# -- limits and credits ---------------------------------------------------------------------------


async def test_rate_limited_with_usable_retry_after(sim_factory: Any, provider_factory: Any) -> None:
    sim = sim_factory(window=1.0, epm=1)
    provider, _ = provider_factory(sim, mode="run", prompt_node_id="node-prompt")
    await provider.submit(job_spec(), "k1")
    with pytest.raises(RateLimited) as caught:
        await provider.submit(job_spec(), "k2")
    error = caught.value
    assert error.status == 429 and error.request_id
    assert error.retry_after is not None and 0 < error.retry_after <= 1.0
    await asyncio.sleep(error.retry_after + 0.05)
    assert isinstance(await provider.submit(job_spec(), "k2"), Submitted)


async def test_out_of_credits(sim_factory: Any, provider_factory: Any) -> None:
    for style in ("string", "object"):
        sim = sim_factory(credits=2, cost=3, error_style=style)
        provider, _ = provider_factory(sim)
        with pytest.raises(OutOfCredits) as caught:
            await provider.submit(job_spec(), "k")
        error = caught.value
        assert (error.required, error.available, error.status) == (3, 2, 402)
        assert error.breakdown == [{"nodeId": "n1", "nodeLabel": "Text to Image", "credits": 3}]
        assert error.message == "Insufficient credits. Required: 3, Available: 2"
        assert error.request_id


async def test_balance_and_estimate(sim_factory: Any, provider_factory: Any) -> None:
    provider, gate = provider_factory(sim_factory(credits=5, cost=2))
    assert await provider.balance() == 5
    assert await provider.estimate(job_spec()) == 2
    assert gate.acquired[OTHER] == 2
    unlimited, _ = provider_factory(sim_factory())
    assert await unlimited.balance() is None


# -- idempotency across a lost answer -------------------------------------------------------------


@pytest.mark.parametrize("fault", ["lost_5xx", "lost_reset"])
async def test_resend_after_lost_answer_makes_one_execution(
    sim: RunningSimulator, provider_factory: Any, fault: str
) -> None:
    provider, _ = provider_factory(sim)
    sim.state.queue_fault(fault, route="execute")
    with pytest.raises(Transient):
        await provider.submit(job_spec(), "job-lost")
    assert sim.state.stats()["executions_created"] == 1  # the paid execution exists...
    again = await provider.submit(job_spec(), "job-lost")  # ...and the re-send finds it
    assert isinstance(again, Submitted)
    [execution_id] = sim.state.book.executions
    assert again.remote_id == execution_id
    stats = sim.state.stats()
    assert stats["executions_by_key"] == {"job-lost": 1}
    assert stats["executions_created"] == 1 and stats["replays"] == 1
    assert isinstance(await finish(provider, again), Finished)


# -- failures -------------------------------------------------------------------------------------


async def test_failed_execution_is_permanent(sim_factory: Any, provider_factory: Any) -> None:
    sim = sim_factory(fail_marker="[fail]", seed=3)
    provider, _ = provider_factory(sim)
    submitted = await provider.submit(job_spec("please [fail]"), "k")
    assert isinstance(submitted, Submitted)
    with pytest.raises(Permanent) as caught:
        await finish(provider, submitted)
    error = caught.value
    assert error.message.endswith(" (node Text to Image)")  # the reason first, for narrow lists
    assert sim.state.book.executions[submitted.remote_id].failure in error.message
    assert error.request_id and error.request_id.startswith("req_")


@pytest.mark.parametrize("kind", ["malformed", "500", "502", "503", "reset"])
async def test_faults_are_transient(sim: RunningSimulator, provider_factory: Any, kind: str) -> None:
    provider, _ = provider_factory(sim)
    submitted = await provider.submit(job_spec(), "k")
    assert isinstance(submitted, Submitted)
    sim.state.queue_fault(kind, route="poll")
    with pytest.raises(Transient) as caught:
        await provider.poll(submitted.handle)
    if kind == "502":
        assert caught.value.message == "502 Bad Gateway"
    if kind != "reset":
        assert caught.value.request_id
    assert isinstance(await finish(provider, submitted), Finished)


async def test_timeout_is_transient(sim_factory: Any, provider_factory: Any) -> None:
    sim = sim_factory(slow_seconds=2.0)
    provider, _ = provider_factory(sim, request_timeout=0.3)
    sim.state.queue_fault("slow", route="usage")
    with pytest.raises(Transient, match=r"no answer within 0\.3s"):
        await provider.balance()


async def test_error_bodies_in_both_styles(sim_factory: Any, provider_factory: Any) -> None:
    for style in ("string", "object"):
        provider, _ = provider_factory(sim_factory(error_style=style), workflow_id="wf_missing")
        with pytest.raises(Permanent) as caught:
            await provider.submit(job_spec(), "k")
        assert (caught.value.message, caught.value.status) == ("Workflow not found", 404)
        assert caught.value.request_id


async def test_bad_key_and_secrecy(sim_factory: Any, provider_factory: Any) -> None:
    sim = sim_factory(api_key="sk-the-right-one")
    provider, _ = provider_factory(sim)
    with pytest.raises(AuthenticationFailed) as caught:
        await provider.balance()
    error = caught.value
    assert error.status == 401
    assert error.message == (
        "wireflow: authentication failed (401): check WFBATCH_WIREFLOW__API_KEY (Invalid API key)"
    )
    assert error.request_id
    assert TEST_KEY not in str(error) and TEST_KEY not in repr(error) and TEST_KEY not in repr(provider)

    dead, _ = provider_factory(sim, base_url="http://127.0.0.1:9/api/v1")  # nothing listens on port 9
    with pytest.raises(Transient) as unreachable:
        await dead.balance()
    assert TEST_KEY not in str(unreachable.value) and TEST_KEY not in repr(unreachable.value)


async def test_download_failures_are_transient(sim_factory: Any, provider_factory: Any) -> None:
    sim = sim_factory(cdn_error_rate=1.0)
    provider, _ = provider_factory(sim)
    finished = await finish(provider, await provider.submit(job_spec(), "k"))
    for _ in range(3):  # 503, empty body and an HTML page all count as a failed download
        with pytest.raises(Transient, match="image download"):
            await provider.download(finished)


def test_configuration_errors() -> None:
    gate = CountingGate()
    with pytest.raises(WireflowConfigError, match="WFBATCH_WIREFLOW__API_KEY"):
        WireflowProvider(WireflowSettings(workflow_id="wf"), gate)
    with pytest.raises(WireflowConfigError, match="WFBATCH_WIREFLOW__WORKFLOW_ID"):
        WireflowProvider(WireflowSettings(api_key=SecretStr("sk-x")), gate)
    with pytest.raises(WireflowConfigError, match="WFBATCH_WIREFLOW__PROMPT_NODE_ID"):
        WireflowProvider(WireflowSettings(api_key=SecretStr("sk-x"), workflow_id="wf", mode="run"), gate)
    assert issubclass(WireflowConfigError, ValueError)


# -- the documented example bodies, replayed exactly ----------------------------------------------

CDN = "https://cdn.wireflow.ai/x.png"
DOC_EXECUTE_201 = {
    "workflowId": "wf_1",
    "batchId": "b-1",
    "executionRuns": [
        {
            "id": "exec_1",
            "startTime": "2025-03-20T12:01:00.000Z",
            "endTime": None,
            "status": "RUNNING",
            "error": None,
            "nodeRuns": [{"nodeId": "n1", "status": "COMPLETED", "output": {"images": [{"url": CDN}]}}],
            "batchId": "b-1",
            "runIndexInBatch": 0,
            "inputIndex": 0,
        }
    ],
}
DOC_POLL_COMPLETED = {
    "status": "COMPLETED",
    "nodeResults": {
        "nodeRuns": [{"nodeId": "n1", "status": "COMPLETED", "output": {"images": [{"url": CDN}]}}]
    },
    "nodeStates": [
        {
            "nodeId": "n1",
            "label": "Text to Image",
            "status": "COMPLETED",
            "error": None,
            "outputUrl": CDN,
            "outputUrls": [CDN],
        }
    ],
    "finalOutput": {"url": CDN},
}
DOC_GRAPH = {
    "nodes": [
        {
            "id": "n1",
            "type": "basedNode",
            "position": {"x": 0, "y": 0},
            "data": {"label": "Text to Image", "nodeType": "model:fal:text-to-image", "prompt": "old"},
        }
    ],
    "edges": [],
}
DOC_402 = {
    "error": "Insufficient credits. Required: 10, Available: 3",
    "insufficientCredits": True,
    "requiredCredits": 10,
    "availableCredits": 3,
    "breakdown": [{"nodeId": "n1", "nodeLabel": "Text to Image", "credits": 10}],
}
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\0" * 16


def scripted(
    routes: dict[tuple[str, str], httpx.Response | Callable[[httpx.Request], httpx.Response]],
) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        answer = routes[(request.method, f"{request.url.host}{request.url.path}")]
        return answer(request) if callable(answer) else answer

    return httpx.MockTransport(handler)


def doc_settings(**overrides: Any) -> WireflowSettings:
    values: dict[str, Any] = {
        "api_key": SecretStr(TEST_KEY),
        "workflow_id": "wf_1",
        "base_url": "https://wireflow.ai/api/v1",
    }
    values.update(overrides)
    return WireflowSettings(**values)


async def test_documented_bodies_through_mock_transport() -> None:
    sent: list[httpx.Request] = []

    def execute(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(201, json=DOC_EXECUTE_201, headers={"X-Request-Id": "r-exec"})

    www = "www.wireflow.ai/api/v1"
    transport = scripted(
        {
            # wireflow.ai 308s to www.: the POST and its body must survive the redirect.
            ("POST", "wireflow.ai/api/v1/workflows/wf_1/execute"): httpx.Response(
                308, headers={"Location": f"https://{www}/workflows/wf_1/execute"}
            ),
            ("GET", "wireflow.ai/api/v1/workflows/wf_1"): httpx.Response(
                308, headers={"Location": f"https://{www}/workflows/wf_1"}
            ),
            ("GET", f"{www}/workflows/wf_1"): httpx.Response(200, json={"data": DOC_GRAPH}),
            ("POST", f"{www}/workflows/wf_1/execute"): execute,
            ("GET", "wireflow.ai/api/v1/workflows/executions/exec_1/poll"): httpx.Response(
                200, json=DOC_POLL_COMPLETED, headers={"X-Request-Id": "r-poll"}
            ),
            ("GET", "cdn.wireflow.ai/x.png"): httpx.Response(403, text="Forbidden"),
            ("GET", "wireflow.ai/api/download"): httpx.Response(
                200, content=PNG_BYTES, headers={"Content-Type": "application/octet-stream"}
            ),
        }
    )
    gate = CountingGate()
    provider = WireflowProvider(doc_settings(), gate, transport=transport)
    try:
        submitted = await provider.submit(job_spec("a lighthouse at dusk"), "key-1")
        # The run is RUNNING even though one node already finished: not done yet.
        assert submitted == Submitted(
            remote_id="exec_1", handle={"execution_id": "exec_1"}, http_status=201, request_id="r-exec"
        )
        body = json.loads(sent[0].content)
        assert body["nodes"][0]["data"]["prompt"] == "a lighthouse at dusk"  # `data.prompt` node style
        assert sent[0].headers["Idempotency-Key"] == "key-1"

        finished = await provider.poll({"execution_id": "exec_1"})
        assert isinstance(finished, Finished)
        assert finished.urls == (CDN,)  # found in three places, kept once
        assert finished.request_id == "r-poll" and finished.credits_used is None
        [image] = await provider.download(finished)  # CDN 403 → the documented download proxy
        assert (image.data, image.media_type) == (PNG_BYTES, "image/png")
        assert gate.acquired == {OTHER: 1, START: 1, POLL: 1}
    finally:
        await provider.aclose()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"data": {"executionId": "exec_1", "status": "RUNNING"}}, "RUNNING"),
        ({"data": {"executionId": "exec_1", "status": "running"}}, "RUNNING"),
        ({"status": "queued"}, "QUEUED"),
        ({"data": {"status": "Completed", "finalOutput": {"url": CDN}, "creditsUsed": 4}}, (CDN,)),
        (
            {"status": "COMPLETED", "nodeStates": [{"outputUrls": [CDN, "https://cdn/y.png"]}]},
            (CDN, "https://cdn/y.png"),
        ),
    ],
)
async def test_poll_shapes(body: dict[str, Any], expected: Any) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
    provider = WireflowProvider(doc_settings(), CountingGate(), transport=transport)
    try:
        outcome = await provider.poll({"execution_id": "exec_1"})
    finally:
        await provider.aclose()
    if isinstance(expected, str):
        assert isinstance(outcome, Pending) and outcome.status == expected
    else:
        assert isinstance(outcome, Finished) and outcome.urls == expected
        assert outcome.credits_used == (4 if "data" in body else None)


@pytest.mark.parametrize(
    ("status", "body", "headers", "check"),
    [
        (
            429,
            {"error": "Too many workflow executions. Please try again later.", "retryAfter": "EPOCH+30"},
            {},
            lambda e: isinstance(e, RateLimited) and e.retry_after is not None and 28 <= e.retry_after <= 30,
        ),
        (
            429,
            {"error": "Too many requests"},
            {"X-RateLimit-Reset": "EPOCH+12"},
            lambda e: isinstance(e, RateLimited) and e.retry_after is not None and 10 <= e.retry_after <= 12,
        ),
        (
            429,
            {"error": "slow down", "retryAfter": 1},
            {"Retry-After": "7"},
            lambda e: isinstance(e, RateLimited) and e.retry_after == 7,
        ),
        (429, {"error": "x"}, {}, lambda e: isinstance(e, RateLimited) and e.retry_after is None),
        (
            402,
            DOC_402,
            {},
            lambda e: (
                isinstance(e, OutOfCredits) and (e.required, e.available, len(e.breakdown)) == (10, 3, 1)
            ),
        ),
        (
            400,
            {
                "error": {
                    "type": "insufficient_credits_error",
                    "code": "x",
                    "message": "Required: 5, Available: 1",
                }
            },
            {},
            lambda e: isinstance(e, OutOfCredits) and (e.required, e.available) == (5, 1),
        ),
        (
            422,
            {"error": {"type": "invalid_request_error", "code": "invalid_graph", "message": "bad graph"}},
            {},
            lambda e: isinstance(e, Permanent) and e.message == "bad graph" and e.status == 422,
        ),
        (409, {"error": "stale_write"}, {}, lambda e: isinstance(e, Permanent)),
        (413, {"error": "Payload too large"}, {}, lambda e: isinstance(e, Permanent)),
        (403, {"error": "Forbidden"}, {}, lambda e: isinstance(e, Permanent) and e.message == "Forbidden"),
        (500, {"error": "boom"}, {}, lambda e: isinstance(e, Transient) and e.message == "boom"),
        (503, "<html><b>Service Unavailable</b></html>", {}, lambda e: e.message == "Service Unavailable"),
        (200, '{"status": "RUNN', {}, lambda e: isinstance(e, Transient) and "malformed" in e.message),
        (200, [1, 2], {}, lambda e: isinstance(e, Transient)),
        (200, {"nodeStates": []}, {}, lambda e: isinstance(e, Transient) and "no status" in e.message),
        (
            200,
            {
                "status": "FAILED",
                "error": "top",
                "nodeStates": [{"nodeId": "n1", "error": "Moderation rejected"}],
            },
            {"X-Request-Id": "r-9"},
            lambda e: (
                isinstance(e, Permanent)
                and e.message == "Moderation rejected (node n1)"
                and e.request_id == "r-9"
            ),
        ),
        (
            200,
            {"status": "FAILED", "error": {"message": "top-level"}},
            {},
            lambda e: e.message == "top-level",
        ),
        (200, {"status": "CANCELLED"}, {}, lambda e: isinstance(e, Permanent) and "cancelled" in e.message),
        (
            200,
            {"status": "COMPLETED", "nodeStates": []},
            {},
            lambda e: e.message == "execution completed without an image",
        ),
    ],
)
async def test_error_mapping(
    status: int, body: Any, headers: dict[str, str], check: Callable[[Any], bool]
) -> None:
    now = int(time.time())

    def fill(text: str) -> str:
        return text.replace("EPOCH+30", str(now + 30)).replace("EPOCH+12", str(now + 12))

    def handler(request: httpx.Request) -> httpx.Response:
        answer_headers = {"X-Request-Id": "r-1", **{k: fill(v) for k, v in headers.items()}}
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers=answer_headers)
        data = json.loads(fill(json.dumps(body)))
        if isinstance(data, dict) and isinstance(data.get("retryAfter"), str):
            data["retryAfter"] = int(data["retryAfter"])  # an epoch number, as in the docs
        return httpx.Response(status, json=data, headers=answer_headers)

    provider = WireflowProvider(doc_settings(), CountingGate(), transport=httpx.MockTransport(handler))
    try:
        with pytest.raises((RateLimited, OutOfCredits, Permanent, Transient)) as caught:
            await provider.poll({"execution_id": "exec_1"})
    finally:
        await provider.aclose()
    assert check(caught.value), caught.value
    assert caught.value.request_id is not None
    assert TEST_KEY not in str(caught.value)


def test_parse_helpers() -> None:
    now = 1_700_000_000.0
    assert parse.retry_after({"retry-after": "Tue, 14 Nov 2023 22:13:40 GMT"}, None, now) == 20
    assert parse.retry_after({}, {"retryAfter": (now + 5) * 1000}, now) == 5  # epoch in ms
    assert parse.retry_after({}, {"error": {"retryAfter": 3}}, now) == 3
    assert parse.execution_id({"executionRuns": [{"id": "a"}], "executionId": "b"}) == "a"
    assert parse.execution_id({"id": "c"}) == "c"
    assert parse.balance({"data": {"credits": "12.5"}}) == 12.5
    assert parse.estimate({"estimateComplete": True, "breakdown": [{"credits": 2}, {"credits": 3}]}) == 5
    assert parse.estimate({"estimateComplete": False, "totalCredits": 5}) is None
    assert parse.estimate({"data": {"estimateComplete": True, "perNode": {"n1": 1, "n2": 2}}}) == 3
    assert parse.find_graph({"data": {"workflow": DOC_GRAPH}}) == DOC_GRAPH
    assert parse.sniff_image(b"RIFF\0\0\0\0WEBPVP8 ") == "image/webp"
