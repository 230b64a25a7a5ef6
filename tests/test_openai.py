"""The OpenAI Images provider (providers.md §5): exact request bodies and error envelopes through
httpx.MockTransport, then the real provider — and the real engine — against `wfbatch sim --provider
openai` over loopback."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image as PILImage
from pydantic import SecretStr

from tests.conftest_sim import TEST_KEY, CountingGate
from wfbatch.core.models import ImageFormat, JobSpec
from wfbatch.core.parsing import parse_prompt_bytes
from wfbatch.core.states import JobState
from wfbatch.engine.intake.ingest import ingest
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.home import HomeLayout
from wfbatch.providers.base import Finished
from wfbatch.providers.errors import (
    AuthenticationFailed,
    OutOfCredits,
    Permanent,
    ProviderError,
    RateLimited,
)
from wfbatch.providers.openai.client import OpenAIConfigError, OpenAIProvider
from wfbatch.providers.openai.prices import table_price
from wfbatch.providers.openai.settings import OpenAISettings
from wfbatch.settings import load_settings
from wfbatch.sim import RunningSimulator, SimOptions
from wfbatch.store import Reuse, Store

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()
REFUSE = "FORBIDDEN-SUBJECT"


def spec(**overrides: Any) -> JobSpec:
    values: dict[str, Any] = {
        "provider": "openai",
        "prompt": "a lighthouse at dusk",
        "negative_prompt": None,
        "model": None,
        "width": 1024,
        "height": 1024,
        "seed": 1234,
        "variant": 0,
    }
    values.update(overrides)
    return JobSpec(**values)


def settings(**overrides: Any) -> OpenAISettings:
    values: dict[str, Any] = {"api_key": SecretStr(TEST_KEY), "base_url": "https://api.example/v1"}
    values.update(overrides)
    return OpenAISettings(**values)


class Recorder:
    """A MockTransport handler answering one canned response and remembering what was sent."""

    def __init__(self, status: int = 200, body: Any = None, headers: dict[str, str] | None = None) -> None:
        self.status, self.headers = status, {"x-request-id": "req_abc", **(headers or {})}
        self.body = body if body is not None else {"created": 1, "data": [{"b64_json": PNG}]}
        self.sent: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return httpx.Response(self.status, json=self.body, headers=self.headers)

    def json(self, index: int = 0) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.sent[index].content)
        return body


async def submit_with(
    recorder: Callable[[httpx.Request], httpx.Response], job: JobSpec, **overrides: Any
) -> Finished:
    provider = OpenAIProvider(settings(**overrides), CountingGate(), transport=httpx.MockTransport(recorder))
    try:
        outcome = await provider.submit(job, "key")
    finally:
        await provider.aclose()
    assert isinstance(outcome, Finished)
    return outcome


# -- what is sent ---------------------------------------------------------------------------------


async def test_gpt_image_body() -> None:
    recorder = Recorder()
    job = spec(
        width=1536,
        height=1024,
        format=ImageFormat.WEBP,
        quality=80,
        negative_prompt="boats",
        params={"quality": "high", "background": "opaque", "moderation": "low"},
    )
    finished = await submit_with(recorder, job)
    sent = recorder.sent[0]
    assert (sent.method, str(sent.url)) == ("POST", "https://api.example/v1/images/generations")
    assert sent.headers["authorization"] == f"Bearer {TEST_KEY}"
    assert recorder.json() == {
        "model": "gpt-image-1",
        "prompt": "a lighthouse at dusk",
        "n": 1,
        "size": "1536x1024",
        "output_format": "webp",
        "output_compression": 80,
        "quality": "high",
        "background": "opaque",
        "moderation": "low",
    }  # no response_format (GPT image models refuse it), no seed, no negative prompt
    assert finished.metadata["not_sent"] == ["seed", "negative_prompt"]
    assert finished.images[0].media_type == "image/png"
    assert finished.request_id == "req_abc"


async def test_dalle_bodies() -> None:
    recorder = Recorder()
    await submit_with(
        recorder, spec(model="dall-e-3", width=1792, params={"quality": "hd", "style": "natural"})
    )
    assert recorder.json() == {
        "model": "dall-e-3",
        "prompt": "a lighthouse at dusk",
        "n": 1,
        "size": "1792x1024",
        "response_format": "b64_json",
        "quality": "hd",
        "style": "natural",
    }
    await submit_with(recorder, spec(model="dall-e-2", width=512, height=512))
    assert recorder.json(1) == {
        "model": "dall-e-2",
        "prompt": "a lighthouse at dusk",
        "n": 1,
        "size": "512x512",
        "response_format": "b64_json",
    }


async def test_entry_model_overrides_the_section_model() -> None:
    recorder = Recorder()
    await submit_with(recorder, spec(model="gpt-image-1-mini"), model="dall-e-2")
    assert recorder.json()["model"] == "gpt-image-1-mini"
    await submit_with(recorder, spec(width=512, height=512), model="dall-e-2")
    assert recorder.json(1)["model"] == "dall-e-2"


async def test_an_unsupported_size_is_refused_without_a_request() -> None:
    recorder = Recorder()
    with pytest.raises(Permanent, match="size 512x512 is not one of 1024x1024, 1536x1024, 1024x1536"):
        await submit_with(recorder, spec(width=512, height=512))
    assert recorder.sent == []


def test_needs_a_key() -> None:
    with pytest.raises(OpenAIConfigError, match="WFBATCH_OPENAI__API_KEY"):
        OpenAIProvider(OpenAISettings(), CountingGate())


# -- errors (providers.md §5.3) -------------------------------------------------------------------


def envelope(message: str, type_: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected", "text"),
    [
        (
            400,
            envelope(
                "Your request was rejected by the safety system.",
                "image_generation_user_error",
                "moderation_blocked",
            ),
            {},
            Permanent,
            "safety system (moderation_blocked)",
        ),
        (
            400,
            envelope(
                "Your request was rejected as a result of our safety system.",
                "invalid_request_error",
                "content_policy_violation",
            ),
            {},
            Permanent,
            "content_policy_violation",
        ),
        (
            400,
            envelope(
                "Billing hard limit has been reached", "invalid_request_error", "billing_hard_limit_reached"
            ),
            {},
            OutOfCredits,
            "billing_hard_limit_reached",
        ),
        (
            429,
            envelope(
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                "insufficient_quota",
            ),
            {},
            OutOfCredits,
            "out of quota",
        ),
        (
            429,
            envelope(
                "Rate limit exceeded for images per minute in organization org-x.",
                "requests",
                "rate_limit_exceeded",
            ),
            {"retry-after-ms": "1500", "retry-after": "2"},
            RateLimited,
            "images per minute",
        ),
        (
            500,
            envelope("The server had an error.", "server_error", None),
            {"x-should-retry": "false"},
            Permanent,
            "not to retry",
        ),
        (
            400,
            envelope("Invalid size", "invalid_request_error", "invalid_value"),
            {},
            Permanent,
            "Invalid size",
        ),
    ],
)
async def test_error_envelopes(
    status: int, body: Any, headers: dict[str, str], expected: type[ProviderError], text: str
) -> None:
    with pytest.raises(ProviderError) as caught:
        await submit_with(Recorder(status, body, headers), spec())
    error = caught.value
    assert type(error) is expected
    assert text in error.message
    assert (error.status, error.request_id) == (status, "req_abc")
    if isinstance(error, RateLimited):
        assert error.retry_after == 1.5  # retry-after-ms wins over retry-after


async def test_wrong_key_message() -> None:
    body = envelope(
        "Incorrect API key provided: sk-wrong****. You can find your API key at ...",
        "invalid_request_error",
        "invalid_api_key",
    )
    with pytest.raises(AuthenticationFailed) as caught:
        await submit_with(Recorder(401, body), spec())
    assert caught.value.message.startswith(
        "openai: authentication failed (401 invalid_api_key): check WFBATCH_OPENAI__API_KEY"
    )


# -- cost -----------------------------------------------------------------------------------------


async def test_estimate_and_charge_come_from_the_price_table_or_costs() -> None:
    provider = OpenAIProvider(settings(), CountingGate())
    assert await provider.estimate(spec(width=1024, height=1536, params={"quality": "high"})) == 0.25
    assert await provider.estimate(spec()) == table_price("gpt-image-1", "high", "1024x1024")  # auto -> high
    assert await provider.estimate(spec(model="gpt-image-2")) is None  # no default price
    await provider.aclose()
    overridden = OpenAIProvider(settings(costs={"gpt-image-1": 0.5}), CountingGate())
    assert await overridden.estimate(spec()) == 0.5
    await overridden.aclose()
    answer = {
        "created": 1,
        "data": [{"b64_json": PNG}],
        "quality": "low",
        "size": "1024x1024",
        "usage": {"input_tokens": 50, "output_tokens": 272, "total_tokens": 322},
    }
    finished = await submit_with(Recorder(body=answer), spec())
    assert finished.credits_used == 0.011  # the quality the answer reports, not the estimate's `auto`
    assert finished.metadata["usage"]["output_tokens"] == 272


# -- over loopback, against the simulator ----------------------------------------------------------


def openai_sim(**overrides: Any) -> RunningSimulator:
    values: dict[str, Any] = {"provider": "openai", "latency": (0.0, 0.0), "seed": 7, "api_key": TEST_KEY}
    values.update(overrides)
    return RunningSimulator(SimOptions(**values))


async def test_rate_limited_with_retry_after_ms_over_loopback() -> None:
    with openai_sim(images_per_minute=1) as sim:
        provider = OpenAIProvider(settings(base_url=sim.base_url), CountingGate())
        try:
            await provider.submit(spec(width=1024, height=1024, params={"quality": "low"}), "k1")
            with pytest.raises(RateLimited) as caught:
                await provider.submit(spec(params={"quality": "low"}), "k2")
        finally:
            await provider.aclose()
    assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= 61
    assert caught.value.request_id and caught.value.request_id.startswith("req_")


async def test_insufficient_quota_and_wrong_key_over_loopback() -> None:
    with openai_sim(quota=1) as sim:
        provider = OpenAIProvider(settings(base_url=sim.base_url), CountingGate())
        wrong = OpenAIProvider(
            settings(base_url=sim.base_url, api_key=SecretStr("sk-wrong-key-123")), CountingGate()
        )
        try:
            await provider.submit(spec(params={"quality": "low"}), "k1")
            with pytest.raises(OutOfCredits, match="insufficient_quota"):
                await provider.submit(spec(params={"quality": "low"}), "k2")
            with pytest.raises(AuthenticationFailed, match="check WFBATCH_OPENAI__API_KEY") as caught:
                await wrong.submit(spec(), "k3")
        finally:
            await provider.aclose()
            await wrong.aclose()
    assert "sk-wrong-key-123" not in caught.value.message


async def test_twelve_prompts_one_refused_over_loopback(store: Store, layout: HomeLayout, home: Path) -> None:
    sizes = [(1024, 1024), (1536, 1024), (1024, 1536)]
    lines = [
        {
            "prompt": f"{'a ' + REFUSE if i == 5 else 'a lighthouse'} number {i}",
            "width": w,
            "height": h,
            "params": {"quality": "low"},
        }
        for i, (w, h) in enumerate(sizes[i % 3] for i in range(12))
    ]
    raw = "\n".join(json.dumps(line) for line in lines).encode()
    with openai_sim(moderation_marker=REFUSE) as sim:
        config = load_settings(
            home,
            provider="openai",
            openai={
                "api_key": TEST_KEY,
                "base_url": sim.base_url,
                "max_in_flight": 4,
                "backoff_initial": 0.05,
            },
        )
        ingested = await ingest(
            store, layout, parse_prompt_bytes(raw, "shots.jsonl"), raw, "openai", reuse=Reuse.NEVER
        )
        engine = Engine(store, config, layout, batch_ids=[ingested.batch.id])
        await engine.run_until_idle()
    jobs = await store.jobs.list_jobs(batch_id=ingested.batch.id, limit=100)
    done = [job for job in jobs if job.state is JobState.DONE]
    failed = [job for job in jobs if job.state is JobState.FAILED]
    assert (len(done), len(failed)) == (11, 1)
    assert REFUSE in failed[0].spec.prompt and failed[0].attempts == 1  # never retried
    assert failed[0].error_message is not None and "moderation_blocked" in failed[0].error_message
    for job in done:
        assert job.file is not None
        with PILImage.open(io.BytesIO((Path(ingested.batch.output_dir) / job.file).read_bytes())) as image:
            assert image.size == (job.spec.width, job.spec.height)
        assert job.credits == table_price("gpt-image-1", "low", f"{job.spec.width}x{job.spec.height}")
        assert TEST_KEY not in json.dumps(job.result or {})
