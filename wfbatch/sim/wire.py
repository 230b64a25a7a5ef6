"""Faults every simulated provider can be given, whatever its route set: applied to the next API
request (never to `/_sim/*`) by a middleware in front of the provider's routes, so one hostile-server
suite runs against every provider (tests/test_provider_contract.py). A provider's own route set may
inject its own faults too (`SimState.queue_fault`); these are the shared ones.

Queue one with `SimState.wire.queue(kind)` or `POST /_sim/faults {"kind": "...", "wire": true}`."""

from __future__ import annotations

import email.utils
import json
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wfbatch.sim.faults import drop_connection, echo_key, endless, presented_key, trickle, truncate

ANSWERED = (
    "http_500",
    "http_503",
    "retry_after_seconds",
    "retry_after_date",
    "ratelimit_reset",
    "echo_key_error",
)
"""Answered by the middleware itself, without the provider's routes seeing the request."""
REWRITTEN = ("malformed", "trickle", "endless", "echo_key", "charge_negative", "charge_nan")
"""The provider's real answer, rewritten on its way out."""
WIRE_FAULTS: tuple[str, ...] = (*ANSWERED, "reset", *REWRITTEN)

RETRY_SECONDS = 3
"""How far ahead every 429 of these faults says to come back."""


class WireFaults:
    """The queue of wire faults still to apply, in order, one request each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queued: deque[str] = deque()
        self.applied: list[str] = []

    def queue(self, kind: str, count: int = 1) -> None:
        if kind not in WIRE_FAULTS:
            raise ValueError(f"unknown wire fault {kind!r}; known: {', '.join(WIRE_FAULTS)}")
        with self._lock:
            self._queued.extend([kind] * count)

    def take(self) -> str | None:
        with self._lock:
            if not self._queued:
                return None
            kind = self._queued.popleft()
            self.applied.append(kind)
            return kind


def _json(body: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body).encode(), status, headers=headers, media_type="application/json")


def answered(kind: str, authorization: str | None, now: float) -> Response:
    if kind in ("http_500", "http_503"):
        status = int(kind.removeprefix("http_"))
        return _json({"error": {"message": "simulated server error", "type": "server_error"}}, status)
    if kind == "retry_after_seconds":
        return _json({"error": "rate limited"}, 429, {"Retry-After": str(RETRY_SECONDS)})
    if kind == "retry_after_date":
        when = email.utils.formatdate(now + RETRY_SECONDS + 1, usegmt=True)  # whole seconds: round up
        return _json({"error": "rate limited"}, 429, {"Retry-After": when})
    if kind == "ratelimit_reset":
        reset = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(now) + RETRY_SECONDS + 1)}
        return _json({"error": "rate limited"}, 429, reset)
    # echo_key_error: a careless server quoting the caller's key in a refusal.
    key = presented_key(authorization) or "no-key"
    message = f"invalid request for key {key}"
    body = {"error": {"message": message, "type": "invalid_request_error"}, "detail": message, "id": key}
    return _json(body, 400, {"X-Request-Id": f"req_{key}"})


def _charged(body: bytes, fields: Sequence[str], value: str) -> bytes:
    """Every charge field of a JSON answer, at any depth, set to a hostile value ("-50", "NaN")."""
    try:
        data = json.loads(body)
    except ValueError:
        return body

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: value if k in fields else walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return json.dumps(walk(data)).encode()


def rewritten(
    kind: str,
    status: int,
    headers: dict[str, str],
    body: bytes,
    authorization: str | None,
    trickle_seconds: float,
    charge_fields: Sequence[str],
) -> Response:
    if kind == "malformed":
        return Response(truncate(body), status, headers=headers)
    if kind == "trickle":
        return StreamingResponse(trickle(body, trickle_seconds), status, headers=headers)
    if kind == "endless":
        return StreamingResponse(endless(body), status, headers=headers)
    if kind == "echo_key":
        key = presented_key(authorization)
        return Response(echo_key(body, key), status, headers={**headers, "X-Request-Id": f"req_{key}"})
    value = "-50" if kind == "charge_negative" else "NaN"
    return Response(_charged(body, charge_fields, value), status, headers=headers)


class WireFaultMiddleware:
    """Applies the next queued wire fault to the next API request."""

    def __init__(
        self, app: ASGIApp, faults: WireFaults, trickle_seconds: float, charge_fields: Sequence[str] = ()
    ) -> None:
        self.app = app
        self.faults = faults
        self.trickle_seconds = trickle_seconds
        self.charge_fields = tuple(charge_fields)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope["path"]).startswith("/_sim/"):
            await self.app(scope, receive, send)
            return
        kind = self.faults.take()
        if kind is None:
            await self.app(scope, receive, send)
            return
        authorization = Headers(scope=scope).get("authorization")
        if kind == "reset":
            if not await drop_connection(scope):
                await Response(b"", 502)(scope, receive, send)
            return
        if kind in ANSWERED:
            await answered(kind, authorization, time.time())(scope, receive, send)
            return
        start: Message = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))

        await self.app(scope, receive, capture)
        headers = {
            key.decode("latin-1"): value.decode("latin-1")
            for key, value in start.get("headers", [])
            if key.lower() != b"content-length"
        }
        reply = rewritten(
            kind,
            int(start.get("status", 200)),
            headers,
            b"".join(chunks),
            authorization,
            self.trickle_seconds,
            self.charge_fields,
        )
        await reply(scope, receive, send)
