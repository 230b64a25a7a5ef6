"""OpenAI's Images route set (providers.md §5): `POST /v1/images/generations` and the multipart
`POST /v1/images/edits` (§12.1, read by `edits`), synchronous (the answer waits out the simulated
latency), plus `/_sim/files/{id}` serving dall-e `url` answers.

The Batch API's routes (files, batches) are in `openai_batch`.

One request goes: early-retry bookkeeping → auth → requests/min → injected fault → validation →
moderation → images/min → quota → latency → images → injected fault after the work (malformed
body, lost answer: the images were made and paid, only the answer is gone). Every answer carries
`x-ratelimit-*-requests` (when a limit is set), `openai-processing-ms`, `openai-version`, and
(from the app's middleware) `x-request-id`.
"""

from __future__ import annotations

import asyncio
import base64
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wfbatch.sim.faults import HOSTILE, drop_connection, hostile_reply, truncate
from wfbatch.sim.images import render_image
from wfbatch.sim.limits import WindowVerdict
from wfbatch.sim.openai.batch import batch_routes
from wfbatch.sim.openai.book import OpenAIBook, OpenAIBooks
from wfbatch.sim.openai.edits import parse_edit
from wfbatch.sim.openai.models import output_tokens
from wfbatch.sim.openai.options import OpenAIOptions
from wfbatch.sim.openai.request import ApiError, Generation, parse_generation
from wfbatch.sim.replies import json_reply
from wfbatch.sim.state import SimState

API = "/v1"
ROUTE = "generations"
EDITS_ROUTE = "edits"
FILES = "/_sim/files"
_MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_RATE_MESSAGES = {
    "requests": "Rate limit reached for images in organization org-sim on requests per min (RPM): "
    "Limit {limit}, Used {limit}, Requested 1. Please try again in {wait}.",
    "images": "Rate limit exceeded for images per minute in organization org-sim: "
    "Limit {limit}, Requested {n}. Please try again in {wait}.",
}


_Reader = Callable[[Request], Awaitable[Generation | ApiError]]


def go_duration(seconds: float) -> str:
    """A duration the way Go prints it (`120ms`, `1s`, `1.5s`, `6m0s`), as in `x-ratelimit-reset-*`.
    Rounded up to the millisecond: a client that waits this long is never early."""
    ms = max(0, math.ceil(seconds * 1000 - 1e-6))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def mask_key(key: str) -> str:
    """What a 401 may say about a key: its `sk-` prefix at most, never any of the secret part."""
    return ("sk-" if key.startswith("sk-") else "") + "…[masked]"


def _error(problem: ApiError, headers: dict[str, str] | None = None) -> Response:
    return json_reply(problem.body(), problem.status, headers)


class _Images:
    def __init__(self, state: SimState) -> None:
        self.state = state
        self.book = state.book_as(OpenAIBooks).images

    # -- the pipeline ------------------------------------------------------------------------

    async def generations(self, request: Request) -> Response:
        return await self._serve(request, ROUTE, self._read_generation)

    async def edits(self, request: Request) -> Response:
        """`POST /v1/images/edits` (multipart, §12.1): the same pipeline, another reader."""
        return await self._serve(request, EDITS_ROUTE, self._read_edit)

    async def _read_generation(self, request: Request) -> Generation | ApiError:
        return parse_generation(await request.body())

    async def _read_edit(self, request: Request) -> Generation | ApiError:
        edit = parse_edit(request.headers.get("content-type", ""), await request.body())
        if isinstance(edit, ApiError):
            return edit
        self.book.received_images(edit.received)
        return edit.generation

    async def _serve(self, request: Request, route: str, read: _Reader) -> Response:
        started = time.monotonic()
        st = self.state
        st.count_request(route)
        now = st.clock()
        self.book.arrive(now)
        self.book.begin()
        try:
            reply = await self._answer(request, now, read)
        finally:
            self.book.end()
        reply.headers.update(self._limit_headers(st.clock()))
        reply.headers["openai-processing-ms"] = str(round((time.monotonic() - started) * 1000))
        reply.headers["openai-version"] = "2020-10-01"
        return reply

    async def _answer(self, request: Request, now: float, read: _Reader) -> Response:
        st, book = self.state, self.book
        problem = self._auth_error(request.headers.get("authorization"))
        if problem is not None:
            return _error(problem)
        verdict, admitted = book.admit_request(now)
        if not admitted:
            return self._too_many(now, verdict, "requests", 1)
        fault = st.draw_fault(ROUTE, is_start=True)
        if fault in ("500", "502", "503", "reset"):
            st.record_fault(fault)
            if fault == "reset" and await drop_connection(request.scope):
                return Response(status_code=502)  # never sent: the connection is gone
            return self._server_error(502 if fault == "reset" else int(fault))
        if fault == "slow":
            st.record_fault(fault)
            await asyncio.sleep(st.options.slow_seconds)
            now = st.clock()
        generation = await read(request)
        if isinstance(generation, ApiError):
            book.count_invalid()
            return _error(generation)
        if book.blocked_by_moderation(generation.prompt):
            return _error(self._moderation(generation))
        images = book.admit_images(now, generation.n)
        if not images.allowed:
            return self._too_many(now, images, "images", generation.n)
        if not book.take_quota(generation.n):
            return _error(self._quota())
        await asyncio.sleep(book.draw_latency())
        reply = await self._generate(request, generation, st.clock())
        if fault == "malformed":
            st.record_fault(fault)
            return Response(
                truncate(bytes(reply.body)),
                status_code=reply.status_code,
                headers={k: v for k, v in reply.headers.items() if k != "content-length"},
            )
        if fault in ("lost_5xx", "lost_reset"):
            # The images were made and paid for; only the answer is lost (providers.md §10).
            st.record_fault(fault)
            if fault == "lost_reset" and await drop_connection(request.scope):
                return Response(status_code=502)
            return self._server_error(502)
        if fault in HOSTILE:
            st.record_fault(fault)
            return hostile_reply(
                fault, reply, request.headers.get("authorization"), st.options.trickle_seconds
            )
        return reply

    # -- answers -----------------------------------------------------------------------------

    async def _generate(self, request: Request, gen: Generation, now: float) -> Response:
        root = str(request.base_url).rstrip("/")
        # Rendering a full-size image takes tens of milliseconds: off the event loop.
        return json_reply(await asyncio.to_thread(images_body, self.book, gen, now, root))

    def auth_error(self, header: str | None) -> ApiError | None:
        return self._auth_error(header)

    def _auth_error(self, header: str | None) -> ApiError | None:
        scheme, _, key = (header or "").partition(" ")
        key = key.strip()
        if not header or scheme.lower() != "bearer" or not key:
            return ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        expected = self.state.options.api_key
        if (expected is not None and key != expected) or (expected is None and not key.startswith("sk-")):
            return ApiError(
                401,
                f"Incorrect API key provided: {mask_key(key)}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )
        return None

    def _too_many(self, now: float, verdict: WindowVerdict, what: str, n: int) -> Response:
        limit = verdict.limit
        if math.isinf(verdict.retry_after):
            # More images than the window ever holds: waiting cannot help, and the server says so.
            problem = ApiError(
                429,
                f"Request too large for images per minute in organization org-sim: Limit {limit}, "
                f"Requested {n}.",
                type="requests",
                code="rate_limit_exceeded",
            )
            return _error(problem, {"x-should-retry": "false"})
        wait_ms = max(1, math.ceil(verdict.retry_after * 1000))
        self.book.announce(now + wait_ms / 1000)
        message = _RATE_MESSAGES[what].format(limit=limit, n=n, wait=go_duration(wait_ms / 1000))
        problem = ApiError(429, message, type="requests", code="rate_limit_exceeded")
        return _error(
            problem, {"retry-after-ms": str(wait_ms), "retry-after": str(math.ceil(wait_ms / 1000))}
        )

    def _moderation(self, gen: Generation) -> ApiError:
        if gen.rules.gpt:
            return ApiError(
                400,
                "Your request was rejected by the safety system. If you believe this is an error, contact us "
                "at help.openai.com and include the request ID.",
                type="image_generation_user_error",
                code="moderation_blocked",
            )
        return ApiError(
            400,
            "Your request was rejected as a result of our safety system. Your prompt may contain text that "
            "is not allowed by our safety system.",
            code="content_policy_violation",
        )

    def _quota(self) -> ApiError:
        if OpenAIOptions.of(self.state.options).quota_error == "billing_hard_limit":
            return ApiError(400, "Billing hard limit has been reached", code="billing_hard_limit_reached")
        return ApiError(
            429,
            "You exceeded your current quota, please check your plan and billing details. For more "
            "information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
            type="insufficient_quota",
            code="insufficient_quota",
        )

    def _server_error(self, status: int) -> Response:
        headers = {"x-should-retry": "false"} if self.book.server_says_final() else {}
        if status == 502:
            # What the proxy in front of the API sends: HTML, not JSON.
            return Response(
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
                status_code=502,
                media_type="text/html",
                headers=headers,
            )
        message = (
            "The server had an error while processing your request. Sorry about that!"
            if status == 500
            else "The engine is currently overloaded, please try again later."
        )
        return _error(ApiError(status, message, type="server_error"), headers)

    def _limit_headers(self, now: float) -> dict[str, str]:
        verdict = self.book.peek_requests(now)
        if verdict.limit is None:
            return {}
        return {
            "x-ratelimit-limit-requests": str(verdict.limit),
            "x-ratelimit-remaining-requests": str(verdict.remaining),
            "x-ratelimit-reset-requests": go_duration(self.book.requests_clear_at(now) - now),
        }


def images_body(book: OpenAIBook, gen: Generation, now: float, root: str) -> dict[str, Any]:
    """The `ImagesResponse` of one valid request, its images rendered (and counted as paid)."""
    ids = [f"img_{uuid.uuid4().hex}" for _ in range(gen.n)]
    bodies = [
        render_image(
            image_id,
            gen.prompt,
            None,
            (gen.width, gen.height),
            gen.output_format,
            transparent=gen.transparent,
            quality=gen.compression,
        )
        for image_id in ids
    ]
    book.generated(gen.prompt, gen.n)
    data: list[dict[str, Any]] = []
    for image_id, image in zip(ids, bodies, strict=True):
        item: dict[str, Any]
        if gen.response_format == "url":
            book.store_file(image_id, image, _MEDIA_TYPES[gen.output_format], now)
            item = {"url": f"{root}{FILES}/{image_id}"}
        else:
            item = {"b64_json": base64.b64encode(image).decode("ascii")}
        if gen.rules.name == "dall-e-3":
            item["revised_prompt"] = gen.prompt
        data.append(item)
    body: dict[str, Any] = {"created": int(now), "data": data}
    if gen.rules.gpt:
        text_tokens = max(1, math.ceil(len(gen.prompt) / 4))
        image_tokens = output_tokens(gen.quality, gen.width, gen.height) * gen.n
        body.update(
            background="transparent" if gen.transparent else "opaque",
            output_format=gen.output_format,
            size=gen.size,
            quality=gen.quality,
            usage={
                "input_tokens": text_tokens,
                "output_tokens": image_tokens,
                "total_tokens": text_tokens + image_tokens,
                "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": 0},
                "output_tokens_details": {"image_tokens": image_tokens, "text_tokens": 0},
            },
        )
    return body


def _files(state: SimState) -> Callable[[Request], Awaitable[Response]]:
    images = state.book_as(OpenAIBooks).images

    async def files(request: Request) -> Response:
        stored = images.file(str(request.path_params["file_id"]))
        if stored is None:
            return Response("Not Found", status_code=404, media_type="text/plain")
        fault = state.draw_cdn_fault()
        if fault == "cdn_503":
            return Response("Service Unavailable", status_code=503, media_type="text/plain")
        if fault == "cdn_empty":
            return Response(b"", media_type=stored.media_type)
        if fault == "cdn_html":
            return Response("<html><body>Access denied</body></html>", media_type="text/html")
        if state.clock() >= stored.expires_at:
            # dall-e URLs are signed for 60 minutes; the storage then refuses them.
            return Response(
                "AuthenticationFailed: signed URL expired", status_code=403, media_type="text/plain"
            )
        return Response(stored.body, media_type=stored.media_type)

    return files


def openai_routes(state: SimState) -> list[Route]:
    images = _Images(state)
    return [
        Route(f"{API}/images/generations", images.generations, methods=["POST"]),
        Route(f"{API}/images/edits", images.edits, methods=["POST"]),
        Route(FILES + "/{file_id}", _files(state), methods=["GET"]),
        *batch_routes(state, images.auth_error, images_body),
    ]
