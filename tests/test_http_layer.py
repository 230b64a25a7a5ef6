"""The shared HTTP layer's exact readings, through httpx.MockTransport: status -> error class,
back-off headers, each provider's rate-limit dialect, the body cap, and secret scrubbing."""

from __future__ import annotations

import email.utils
import json
import logging
import math
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest_sim import CountingGate
from wfbatch.providers.base import RequestKind
from wfbatch.providers.errors import (
    AuthenticationFailed,
    OutOfCredits,
    Permanent,
    ProviderError,
    RateLimited,
    Transient,
)
from wfbatch.providers.http import REDACTED, HttpLayer, HttpLimits, Scrubber, parse_charge
from wfbatch.providers.http import headers as hdr
from wfbatch.providers.openai.headers import openai_dialect
from wfbatch.providers.replicate.headers import replicate_dialect

KEY = "sk-layer-test-key/with+odd=chars"
NOW = 1_750_000_000.0


def layer(
    handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any
) -> tuple[HttpLayer, CountingGate]:
    gate = CountingGate()
    limits = kwargs.pop("limits", HttpLimits())
    return (
        HttpLayer("testprov", gate, limits, secrets=[KEY], transport=httpx.MockTransport(handler), **kwargs),
        gate,
    )


async def answer_error(status: int, body: Any = None, headers: dict[str, str] | None = None) -> ProviderError:
    content = json.dumps(body).encode() if body is not None else b""
    http, _ = layer(
        lambda request: httpx.Response(status, content=content, headers=headers or {}),
        key_setting="WFBATCH_TESTPROV__API_KEY",
    )
    try:
        with pytest.raises(ProviderError) as caught:
            await http.send(RequestKind.POLL, "GET", "https://api.example/v1/thing")
    finally:
        await http.aclose()
    return caught.value


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            401,
            {
                "error": {
                    "message": "Incorrect API key",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
            AuthenticationFailed,
        ),
        (403, {"error": {"message": "bad key", "code": "invalid_api_key"}}, AuthenticationFailed),
        (403, {"error": "Forbidden"}, Permanent),
        (402, {"error": "pay up"}, OutOfCredits),
        (429, {"error": "slow down"}, RateLimited),
        (408, None, Transient),
        (409, None, Transient),
        (500, None, Transient),
        (503, None, Transient),
        (400, {"error": "bad size"}, Permanent),
        (404, None, Permanent),
        (422, None, Permanent),
    ],
)
async def test_status_mapping(status: int, body: Any, expected: type[ProviderError]) -> None:
    error = await answer_error(status, body, {"x-request-id": "req_123"})
    assert type(error) is expected
    assert (error.status, error.request_id) == (status, "req_123")


async def test_authentication_message_names_the_setting() -> None:
    error = await answer_error(
        401, {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}
    )
    assert error.message == (
        "testprov: authentication failed (401 invalid_api_key): check WFBATCH_TESTPROV__API_KEY"
        " (Incorrect API key provided)"
    )


async def test_should_retry_false_makes_a_retryable_error_final() -> None:
    error = await answer_error(503, {"error": "busy"}, {"x-should-retry": "false"})
    assert type(error) is Permanent and "not to retry" in error.message
    rate = await answer_error(429, {"error": "busy"}, {"x-should-retry": "false"})
    assert type(rate) is Permanent


async def test_provider_hook_decides_first() -> None:
    def hook(answer: Any) -> ProviderError | None:
        return OutOfCredits("quota", status=answer.status) if answer.status == 429 else None

    http, _ = layer(lambda r: httpx.Response(429, json={"error": "x"}), classify=hook)
    with pytest.raises(OutOfCredits):
        await http.send(RequestKind.START, "POST", "https://api.example/v1/x")
    await http.aclose()


async def test_retry_after_headers() -> None:
    assert hdr.retry_after({"retry-after-ms": "1500", "retry-after": "9"}, NOW) == 1.5
    assert hdr.retry_after({"retry-after": "7"}, NOW) == 7.0
    date = email.utils.formatdate(NOW + 30, usegmt=True)
    assert hdr.retry_after({"retry-after": date}, NOW) == pytest.approx(30.0)
    assert hdr.retry_after({"retry-after": "soon"}, NOW) is None
    assert hdr.retry_after({"retry-after": "-3"}, NOW) is None
    assert hdr.retry_after({"retry-after-ms": "nan"}, NOW) is None
    assert hdr.retry_after({}, NOW) is None
    error = await answer_error(429, {"error": "x"}, {"retry-after-ms": "250"})
    assert isinstance(error, RateLimited) and error.retry_after == 0.25


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("12ms", 0.012),
        ("1s", 1.0),
        ("1h2m3.5s", 3723.5),
        ("800us", 0.0008),
        ("2", 2.0),
        ("", None),
        ("6x", None),
        ("m5s", None),
        ("-1s", None),
    ],
)
def test_go_durations(text: str, seconds: float | None) -> None:
    found = hdr.go_duration(text)
    assert found == (pytest.approx(seconds) if seconds is not None else None)


def test_rate_limit_dialects() -> None:
    wireflow = hdr.x_ratelimit_dialect(
        {"x-ratelimit-limit": "10", "x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 20)},
        NOW,
    )
    assert wireflow == hdr.RateLimitSnapshot(10, 0, NOW + 20)
    openai = openai_dialect(
        {
            "x-ratelimit-limit-requests": "500",
            "x-ratelimit-remaining-requests": "499",
            "x-ratelimit-reset-requests": "6m0s",
            "x-ratelimit-reset-tokens": "1s",
        },
        NOW,
    )
    assert openai == hdr.RateLimitSnapshot(500, 499, NOW + 360)
    replicate = replicate_dialect({"ratelimit-remaining": "3", "ratelimit-reset": "12"}, NOW)
    assert replicate == hdr.RateLimitSnapshot(None, 3, NOW + 12)
    assert openai_dialect({"x-ratelimit-reset-requests": "garbage"}, NOW).reset_at is None


async def test_429_without_retry_after_uses_the_dialect_reset() -> None:
    import time

    reset = str(int(time.time()) + 40)
    http, _ = layer(
        lambda r: httpx.Response(429, json={"error": "x"}, headers={"x-ratelimit-reset": reset}),
        dialect=hdr.x_ratelimit_dialect,
    )
    with pytest.raises(RateLimited) as caught:
        await http.send(RequestKind.POLL, "GET", "https://api.example/v1/x")
    assert caught.value.retry_after is not None and 35 <= caught.value.retry_after <= 41
    await http.aclose()


async def test_declared_oversize_is_refused_before_reading() -> None:
    http, _ = layer(
        lambda r: httpx.Response(200, content=b"x" * 4096, headers={"content-length": "4096"}),
        limits=HttpLimits(max_response_bytes=1024),
    )
    with pytest.raises(Permanent, match=r"too large.*declared 4096 bytes"):
        await http.send(None, "GET", "https://cdn.example/a.png", decode=False)
    await http.aclose()


async def test_gzip_bomb_is_counted_inflated() -> None:
    import gzip

    bomb = gzip.compress(b"\0" * 200_000)
    assert len(bomb) < 1024
    http, _ = layer(
        lambda r: httpx.Response(200, content=bomb, headers={"content-encoding": "gzip"}),
        limits=HttpLimits(max_response_bytes=64 * 1024),
    )
    with pytest.raises(Permanent, match="too large"):
        await http.send(None, "GET", "https://cdn.example/a.png", decode=False)
    await http.aclose()


async def test_deeply_nested_json_is_a_malformed_answer() -> None:
    http, _ = layer(lambda r: httpx.Response(200, content=b"[" * 100_000 + b"]" * 100_000))
    answer = await http.send(RequestKind.POLL, "GET", "https://api.example/v1/x")
    with pytest.raises(Transient, match="malformed"):
        answer.json_object()
    await http.aclose()


async def test_gate_sees_every_api_request_and_observes_the_answer() -> None:
    http, gate = layer(lambda r: httpx.Response(200, json={}, headers={"x-ratelimit-remaining": "5"}))
    await http.send(RequestKind.START, "POST", "https://api.example/v1/x", json={})
    await http.send(None, "GET", "https://cdn.example/a.png", decode=False)
    assert gate.acquired == {RequestKind.START: 1}
    assert [status for status, _ in gate.observed] == [200]
    await http.aclose()


async def test_every_echoed_form_of_the_key_is_scrubbed() -> None:
    from urllib.parse import quote

    echoed = {
        "id": f"exec_{KEY}",
        "url": f"https://cdn.example/x.png?k={quote(KEY, safe='')}",
        "nested": [{"auth": f"Bearer {KEY}", f"key-{KEY}": 1}],
        "message": f"Key {KEY} is not valid",
    }
    http, _ = layer(lambda r: httpx.Response(400, json=echoed, headers={"x-request-id": f"req_{KEY}"}))
    with pytest.raises(Permanent) as caught:
        await http.send(RequestKind.POLL, "GET", "https://api.example/v1/x")
    assert caught.value.request_id == f"req_{REDACTED}"
    assert KEY not in caught.value.message
    await http.aclose()
    http, _ = layer(lambda r: httpx.Response(200, json=echoed, headers={"x-request-id": f"req_{KEY}"}))
    answer = await http.send(RequestKind.POLL, "GET", "https://api.example/v1/x")
    assert KEY not in json.dumps(answer.body) and quote(KEY, safe="") not in json.dumps(answer.body)
    assert answer.body["nested"][0]["auth"] == f"Bearer {REDACTED}"
    # JSON's escaped slash is another spelling of the same key.
    escaped = Scrubber([KEY]).text(json.dumps({"k": KEY}).replace("/", "\\/"))
    assert "layer-test-key" not in escaped
    await http.aclose()


async def test_transport_error_text_is_scrubbed() -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach host for {KEY}")

    http, _ = layer(fail)
    with pytest.raises(Transient) as caught:
        await http.send(RequestKind.POLL, "GET", "https://api.example/v1/x")
    assert KEY not in caught.value.message and caught.value.connection_failed
    await http.aclose()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, 3.0),
        (0, 0.0),
        ("2.5", 2.5),
        (None, None),
        ("-50", None),
        (-1, None),
        ("NaN", None),
        (math.nan, None),
        (math.inf, None),
        ("Infinity", None),
        ("lots", None),
        (True, None),
        ({"a": 1}, None),
    ],
)
def test_parse_charge(value: Any, expected: float | None, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert parse_charge(value, "testprov") == expected
    if expected is None and value is not None:
        assert "testprov" in caplog.text and "invalid charge" in caplog.text


async def test_a_huge_request_id_is_cut_to_an_id() -> None:
    http, _ = layer(lambda r: httpx.Response(200, json={}, headers={"x-request-id": "r" * 50_000}))
    answer = await http.send(RequestKind.POLL, "GET", "https://api.example/v1/x")
    assert answer.request_id is not None and len(answer.request_id) == 200
    await http.aclose()


def test_a_zero_or_negative_limit_is_no_limit() -> None:
    for value in ("0", "-5", "nan"):
        assert hdr.x_ratelimit_dialect({"x-ratelimit-limit": value}, NOW).limit is None
        assert openai_dialect({"x-ratelimit-limit-requests": value}, NOW).limit is None
