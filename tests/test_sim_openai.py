"""The OpenAI Images simulator (`wfbatch sim --provider openai`, providers.md §5) driven with plain
httpx over loopback: validation, answers, moderation, limits, quota, faults and stats. Every request
we send and every answer we get is checked against the transcribed schema subset."""

from __future__ import annotations

import base64
import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import jsonschema
import pytest
from PIL import Image

from tests.conftest_sim import TEST_KEY
from tests.openai_images_schema import CREATE_IMAGE_REQUEST, ERROR_RESPONSE, IMAGES_RESPONSE
from wfbatch.sim import SIM_PROVIDERS, RunningSimulator, SimOptions
from wfbatch.sim.openai.routes import go_duration

AUTH = {"Authorization": f"Bearer {TEST_KEY}"}
GO_DURATION = re.compile(r"^(\d+h)?(\d+m)?(\d+(\.\d+)?(ms|s))$")


class ManualClock:
    """The simulator's clock, moved by the test: windows and URL expiry without sleeping."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def openai_options(**overrides: Any) -> SimOptions:
    base: dict[str, Any] = {"provider": "openai", "latency": (0.0, 0.0), "seed": 7, "api_key": TEST_KEY}
    base.update(overrides)
    return SimOptions(**base)


@contextmanager
def running(
    clock: ManualClock | None = None, **overrides: Any
) -> Iterator[tuple[RunningSimulator, httpx.Client]]:
    sim = RunningSimulator(openai_options(**overrides), clock=clock or time.time)
    with sim, httpx.Client(base_url=sim.base_url, headers=AUTH, timeout=10.0) as client:
        yield sim, client


def generate(client: httpx.Client, **body: Any) -> httpx.Response:
    """POST a request the schema accepts, and check the answer against the schema."""
    body.setdefault("prompt", "a lighthouse at dusk")
    jsonschema.validate(body, CREATE_IMAGE_REQUEST)
    response = client.post("/images/generations", json=body)
    check_answer(response)
    return response


def check_answer(response: httpx.Response, *, strict_size: bool = True) -> None:
    assert response.headers["x-request-id"].startswith("req_")
    assert int(response.headers["openai-processing-ms"]) >= 0
    if response.status_code == 200:
        schema = IMAGES_RESPONSE
        if not strict_size:
            schema = {**schema, "properties": {**schema["properties"], "size": {"type": "string"}}}
        jsonschema.validate(response.json(), schema)
    elif response.headers.get("content-type", "").startswith("application/json"):
        jsonschema.validate(response.json(), ERROR_RESPONSE)


def error_of(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


def decoded(item: dict[str, Any]) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(item["b64_json"])))


def stats(sim: RunningSimulator) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{sim.root_url}/_sim/stats").json()
    return body


# -- the registry ------------------------------------------------------------------------------


def test_each_provider_has_a_route_set() -> None:
    assert {"wireflow", "openai", "fal", "replicate", "stability", "comfyui"} <= set(SIM_PROVIDERS)
    assert RunningSimulator(openai_options()).options.provider == "openai"
    with running() as (sim, _client):
        assert sim.base_url.endswith("/v1")
    with pytest.raises(ValueError, match="unknown provider"):
        SimOptions(provider="nope")


# -- successful answers ------------------------------------------------------------------------


def test_gpt_image_answer_is_a_real_image_of_the_requested_size_and_format() -> None:
    with running(rpm=100) as (sim, client):
        response = generate(
            client,
            model="gpt-image-1",
            size="1536x1024",
            quality="high",
            output_format="jpeg",
            output_compression=60,
            n=2,
        )
        assert response.status_code == 200
        body = response.json()
        assert len(body["data"]) == 2
        images = [decoded(item) for item in body["data"]]
        assert [(i.format, i.size) for i in images] == [("JPEG", (1536, 1024))] * 2
        assert body["data"][0]["b64_json"] != body["data"][1]["b64_json"]
        assert (body["size"], body["quality"], body["output_format"], body["background"]) == (
            "1536x1024",
            "high",
            "jpeg",
            "opaque",
        )
        # 4160 tokens per high 1024² image, scaled by area, per image.
        assert body["usage"]["output_tokens"] == 6240 * 2
        assert body["usage"]["total_tokens"] == body["usage"]["input_tokens"] + body["usage"]["output_tokens"]
        assert response.headers["x-ratelimit-limit-requests"] == "100"
        assert response.headers["x-ratelimit-remaining-requests"] == "99"
        assert GO_DURATION.match(response.headers["x-ratelimit-reset-requests"])
        assert stats(sim)["openai"]["generations"] == 2


def test_defaults_transparent_webp_and_auto() -> None:
    with running() as (_sim, client):
        body = generate(
            client, model="gpt-image-1-mini", background="transparent", output_format="webp"
        ).json()
        image = decoded(body["data"][0])
        assert (image.format, image.size, image.mode) == ("WEBP", (1024, 1024), "RGBA")
        assert (body["size"], body["quality"], body["background"]) == ("1024x1024", "medium", "transparent")
        assert body["usage"]["output_tokens"] == 1056
        # No model but a GPT-only parameter: gpt-image-1, base64, usage.
        body = generate(client, moderation="low").json()
        assert "usage" in body and decoded(body["data"][0]).format == "PNG"


def test_gpt_image_2_takes_free_sizes_the_response_schema_does_not_list() -> None:
    with running() as (_sim, client):
        response = client.post(
            "/images/generations", json={"model": "gpt-image-2", "prompt": "x", "size": "1536x864"}
        )
        check_answer(response, strict_size=False)
        assert decoded(response.json()["data"][0]).size == (1536, 864)
        # providers.md §5.2: the spec's response enum is narrower than what the API answers.
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(response.json(), IMAGES_RESPONSE)


def test_dall_e_defaults_to_a_url_served_by_the_simulator_for_60_minutes() -> None:
    clock = ManualClock()
    with running(clock) as (_sim, client):
        body = generate(client, size="256x256").json()  # no model: dall-e-2
        assert "usage" not in body and "b64_json" not in body["data"][0]
        url = body["data"][0]["url"]
        download = httpx.get(url)
        assert download.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(download.content)).size == (256, 256)
        clock.advance(3601)
        assert httpx.get(url).status_code == 403
        assert httpx.get(url.rsplit("/", 1)[0] + "/img_nope").status_code == 404

        body = generate(
            client,
            model="dall-e-3",
            size="1792x1024",
            quality="hd",
            style="natural",
            response_format="b64_json",
        ).json()
        assert body["data"][0]["revised_prompt"] == "a lighthouse at dusk"
        assert decoded(body["data"][0]).size == (1792, 1024)


def test_the_answer_waits_out_the_latency() -> None:
    with running(latency=(0.3, 0.3)) as (_sim, client):
        response = generate(client, model="gpt-image-1", quality="low")
        assert int(response.headers["openai-processing-ms"]) >= 300


# -- validation --------------------------------------------------------------------------------

BAD_REQUESTS: list[tuple[dict[str, Any], str | None, str | None]] = [
    ({"prompt": "x", "colour": "red"}, "colour", "unknown_parameter"),
    ({"model": "gpt-image-1"}, "prompt", "missing_required_parameter"),
    ({"prompt": 5}, "prompt", "invalid_type"),
    ({"prompt": "x" * 1001}, "prompt", "string_above_max_length"),
    ({"prompt": "x", "model": "dall-e-4"}, "model", "invalid_value"),
    ({"prompt": "x", "n": 11, "model": "gpt-image-1"}, "n", "integer_above_max_value"),
    ({"prompt": "x", "n": 0}, "n", "integer_below_min_value"),
    ({"prompt": "x", "n": "2"}, "n", "invalid_type"),
    ({"prompt": "x", "n": 2, "model": "dall-e-3"}, "n", "invalid_value"),
    ({"prompt": "x", "model": "gpt-image-1", "size": "1000x1000"}, "size", "invalid_value"),
    ({"prompt": "x", "model": "gpt-image-1", "size": "1792x1024"}, "size", "invalid_value"),
    ({"prompt": "x", "model": "dall-e-2", "size": "1536x1024"}, "size", "invalid_value"),
    ({"prompt": "x", "model": "dall-e-3", "size": "512x512"}, "size", "invalid_value"),
    ({"prompt": "x", "model": "gpt-image-2", "size": "1000x1000"}, "size", "invalid_value"),
    ({"prompt": "x", "model": "gpt-image-2", "size": "3200x1056"}, "size", "invalid_value"),
    ({"prompt": "x", "model": "gpt-image-2", "size": "3856x2160"}, "size", "invalid_value"),
    ({"prompt": "x", "model": "gpt-image-1", "quality": "hd"}, "quality", "invalid_value"),
    ({"prompt": "x", "model": "dall-e-3", "quality": "high"}, "quality", "invalid_value"),
    (
        {"prompt": "x", "model": "gpt-image-1", "response_format": "url"},
        "response_format",
        "unknown_parameter",
    ),
    ({"prompt": "x", "model": "dall-e-3", "output_format": "png"}, "output_format", "unknown_parameter"),
    ({"prompt": "x", "model": "dall-e-2", "background": "opaque"}, "background", "unknown_parameter"),
    ({"prompt": "x", "model": "dall-e-2", "style": "vivid"}, "style", "unknown_parameter"),
    ({"prompt": "x", "model": "gpt-image-1", "style": "vivid"}, "style", "unknown_parameter"),
    ({"prompt": "x", "model": "gpt-image-1", "output_format": "gif"}, "output_format", "invalid_value"),
    (
        {"prompt": "x", "model": "gpt-image-1", "output_compression": 50},
        "output_compression",
        "invalid_value",
    ),
    (
        {"prompt": "x", "model": "gpt-image-1", "output_format": "jpeg", "output_compression": 101},
        "output_compression",
        "invalid_value",
    ),
    (
        {"prompt": "x", "model": "gpt-image-1", "output_format": "jpeg", "background": "transparent"},
        "background",
        "invalid_value",
    ),
    ({"prompt": "x", "model": "gpt-image-1", "stream": True}, "stream", None),
]


@pytest.mark.parametrize(("body", "param", "code"), BAD_REQUESTS, ids=[str(p) for _b, p, _c in BAD_REQUESTS])
def test_invalid_requests_are_400_naming_the_param(
    body: dict[str, Any], param: str, code: str | None
) -> None:
    with running() as (sim, client):
        response = client.post("/images/generations", json=body)
        check_answer(response)
        assert response.status_code == 400
        error = error_of(response)
        assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")
        assert stats(sim)["openai"]["generations"] == 0


def test_valid_free_sizes_for_gpt_image_2() -> None:
    with running() as (_sim, client):
        for size in ("3840x2160", "2160x720", "auto"):
            response = client.post(
                "/images/generations", json={"model": "gpt-image-2", "prompt": "x", "size": size}
            )
            assert response.status_code == 200, response.text


def test_not_json_is_a_400() -> None:
    with running() as (_sim, client):
        response = client.post(
            "/images/generations", content=b"{nope", headers={"content-type": "application/json"}
        )
        check_answer(response)
        assert response.status_code == 400 and error_of(response)["type"] == "invalid_request_error"


def test_wrong_key_is_401_without_echoing_it() -> None:
    with running() as (sim, _client):
        secret = "sk-proj-WRONG-key-0123456789abcdef"
        response = httpx.post(
            f"{sim.base_url}/images/generations",
            json={"prompt": "x"},
            headers={"Authorization": f"Bearer {secret}"},
        )
        check_answer(response)
        assert response.status_code == 401
        error = error_of(response)
        assert (error["code"], error["type"], error["param"]) == (
            "invalid_api_key",
            "invalid_request_error",
            None,
        )
        assert error["message"].startswith("Incorrect API key provided: sk-…[masked]")
        for part in (secret, secret[3:], secret[-4:], TEST_KEY):
            assert part not in response.text
        missing = httpx.post(f"{sim.base_url}/images/generations", json={"prompt": "x"})
        assert missing.status_code == 401
        assert stats(sim)["openai"]["generations"] == 0


# -- moderation --------------------------------------------------------------------------------


def test_moderation_marker_blocks_per_model_family() -> None:
    with running(moderation_marker="BLOCKME", fail_marker="FAILME") as (sim, client):
        gpt = generate(client, model="gpt-image-1", prompt="a BLOCKME cat")
        assert gpt.status_code == 400
        assert (error_of(gpt)["code"], error_of(gpt)["type"]) == (
            "moderation_blocked",
            "image_generation_user_error",
        )
        assert "rejected by the safety system" in error_of(gpt)["message"]
        dalle = generate(client, model="dall-e-3", prompt="a FAILME cat")
        assert dalle.status_code == 400
        assert (error_of(dalle)["code"], error_of(dalle)["type"]) == (
            "content_policy_violation",
            "invalid_request_error",
        )
        assert generate(client, model="gpt-image-1", prompt="a cat").status_code == 200
        report = stats(sim)["openai"]
        assert (report["moderation_blocked"], report["generations"]) == (2, 1)


# -- limits ------------------------------------------------------------------------------------


def test_requests_per_minute_429_with_retry_headers_and_early_retries() -> None:
    clock = ManualClock()
    with running(clock, rpm=2, window=60) as (sim, client):
        assert generate(client, quality="auto").status_code == 200
        clock.advance(10)
        second = generate(client)
        assert second.headers["x-ratelimit-remaining-requests"] == "0"
        assert second.headers["x-ratelimit-reset-requests"] == "1m0s"
        refused = generate(client)
        assert refused.status_code == 429
        error = error_of(refused)
        assert (error["code"], error["type"]) == ("rate_limit_exceeded", "requests")
        # The first hit frees its slot 60 s after it came, 10 s of which have passed.
        assert refused.headers["retry-after-ms"] == "50000"
        assert refused.headers["retry-after"] == "50"
        assert refused.headers["x-ratelimit-reset-requests"] == "1m0s"
        assert stats(sim)["openai"]["early_retries"] == 0

        clock.advance(49.9)  # inside the announced window: an early retry, and refused again
        assert generate(client).status_code == 429
        clock.advance(0.1)  # exactly when it said: not early, and admitted
        assert generate(client).status_code == 200
        report = stats(sim)
        assert report["openai"]["early_retries"] == 1
        assert report["rate_limited"] == report["openai"]["rate_limited"] == 2
        assert report["openai"]["generations"] == 3


def test_images_per_minute_counts_images_not_requests() -> None:
    clock = ManualClock()
    with running(clock, images_per_minute=3) as (sim, client):
        assert generate(client, model="gpt-image-1", n=2).status_code == 200
        refused = generate(client, model="gpt-image-1", n=2)
        assert refused.status_code == 429 and error_of(refused)["code"] == "rate_limit_exceeded"
        assert int(refused.headers["retry-after-ms"]) == 60000
        assert generate(client, model="gpt-image-1", n=1).status_code == 200
        too_big = generate(client, model="gpt-image-1", n=4)
        assert too_big.status_code == 429
        assert too_big.headers["x-should-retry"] == "false" and "retry-after" not in too_big.headers
        clock.advance(60)
        assert generate(client, model="gpt-image-1", n=3).status_code == 200
        assert stats(sim)["openai"]["generations"] == 6


def test_go_durations() -> None:
    assert [go_duration(s) for s in (0, 0.12, 0.0001, 1, 1.5, 59.999, 360, 3725)] == [
        "0s",
        "120ms",
        "1ms",
        "1s",
        "1.5s",
        "59.999s",
        "6m0s",
        "1h2m5s",
    ]


# -- quota -------------------------------------------------------------------------------------


def test_quota_then_top_up_lets_a_rerun_finish() -> None:
    with running(quota=3) as (sim, client):
        assert generate(client, model="gpt-image-1", n=2).status_code == 200
        spent = generate(client, model="gpt-image-1", n=2)
        assert spent.status_code == 429
        error = error_of(spent)
        assert (error["code"], error["type"]) == ("insufficient_quota", "insufficient_quota")
        assert error["message"].startswith(
            "You exceeded your current quota, please check your plan and billing"
        )
        assert "retry-after" not in spent.headers
        topped = httpx.post(f"{sim.root_url}/_sim/topup", json={"amount": 5}).json()
        assert topped == {"balance": 6, "unlimited": False}
        assert generate(client, model="gpt-image-1", n=2).status_code == 200
        report = stats(sim)["openai"]
        assert (report["generations"], report["quota_refused"], report["quota_left"]) == (4, 1, 4)


def test_billing_hard_limit_variant() -> None:
    with running(quota=0, quota_error="billing_hard_limit") as (_sim, client):
        response = generate(client)
        assert response.status_code == 400
        assert (error_of(response)["code"], error_of(response)["type"]) == (
            "billing_hard_limit_reached",
            "invalid_request_error",
        )


# -- faults ------------------------------------------------------------------------------------


def queue(sim: RunningSimulator, kind: str, count: int = 1) -> None:
    assert httpx.post(f"{sim.root_url}/_sim/faults", json={"kind": kind, "count": count}).status_code == 200


def test_injected_server_errors_and_should_retry() -> None:
    with running(no_retry_share=1.0) as (sim, client):
        queue(sim, "500")
        response = generate(client)
        assert response.status_code == 500
        assert error_of(response)["type"] == "server_error"
        assert response.headers["x-should-retry"] == "false"
        assert response.headers["x-request-id"].startswith("req_")
    with running() as (sim, client):
        queue(sim, "503")
        response = generate(client)
        assert response.status_code == 503 and "x-should-retry" not in response.headers
        assert stats(sim)["faults_injected"] == {"503": 1}


def test_lost_and_malformed_answers_were_still_paid() -> None:
    with running() as (sim, client):
        queue(sim, "lost_5xx")
        assert generate(client, prompt="lost one").status_code == 502
        queue(sim, "malformed")
        response = client.post("/images/generations", json={"prompt": "garbled one"})
        assert response.status_code == 200
        with pytest.raises(ValueError):
            response.json()
        queue(sim, "reset")
        with pytest.raises(httpx.TransportError):
            client.post("/images/generations", json={"prompt": "never made"})
        report = stats(sim)
        assert report["openai"]["generations_by_prompt"] == {"lost one": 1, "garbled one": 1}
        assert report["faults_injected"] == {"lost_5xx": 1, "malformed": 1, "reset": 1}


def test_random_faults_are_seeded() -> None:
    def statuses() -> list[int]:
        with running(error_rate=0.5, faults=("5xx",)) as (_sim, client):
            return [generate(client, prompt=f"p{i}").status_code for i in range(12)]

    first = statuses()
    assert first == statuses()
    assert 200 in first and any(s >= 500 for s in first)


# -- stats -------------------------------------------------------------------------------------


def test_stats_count_generations_per_prompt() -> None:
    with running() as (sim, client):
        for prompt in ("a", "b", "a"):
            generate(client, prompt=prompt)
        generate(client, prompt="c", model="gpt-image-1", n=3)
        report = stats(sim)
        assert report["provider"] == "openai"
        assert report["requests"]["by_route"] == {"generations": 4}
        assert report["openai"]["generations_by_prompt"] == {"a": 2, "b": 1, "c": 3}
        assert report["openai"]["generations"] == 6


def test_cli_serves_openai() -> None:
    code = "from wfbatch.cli.sim_cmd import sim_command; sim_command()"
    args = [
        sys.executable,
        "-c",
        code,
        "--provider",
        "openai",
        "--port",
        "0",
        "--latency",
        "0",
        "--api-key",
        TEST_KEY,
        "--quota",
        "5",
    ]
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("OpenAI Images simulator at http://127.0.0.1:")
        assert TEST_KEY not in line
        base_url = line.split()[4]
        assert base_url.endswith("/v1")
        response = httpx.post(f"{base_url}/images/generations", json={"prompt": "x"}, headers=AUTH)
        assert response.status_code == 200
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=10)
        assert "stopped: 1 requests, 1 images" in out
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
