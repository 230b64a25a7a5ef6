"""The one HTTP path every provider's requests take: gate -> request -> observe -> classify.

Hardened against a hostile or broken server:
- every body is streamed and counted; past `max_response_bytes` the request is aborted (memory stays
  flat under an endless body) and fails with "too large";
- the whole exchange — connect, headers, every byte of the body — has one wall-clock deadline
  (`request_deadline`), so a body trickling a byte every few seconds cannot hold a job forever
  (httpx's own timeouts are per read and never fire on a trickle);
- every string that comes back (request id, decoded JSON, error messages) has the configured secrets
  replaced by `[redacted]` before it leaves this module;
- consecutive connection failures (no HTTP answer at all) are counted; after `unreachable_after` of
  them the layer raises `Unreachable` so the engine can pause the provider instead of burning retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json as jsonlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from wfbatch.providers.base import RequestGate, RequestKind
from wfbatch.providers.config import ProviderLimits
from wfbatch.providers.errors import Permanent, ProviderError, Transient, Unreachable
from wfbatch.providers.http import classify as cls
from wfbatch.providers.http.headers import RateLimitDialect, no_dialect
from wfbatch.providers.http.scrub import Scrubber

USER_AGENT = "wfbatch/0.1 (+https://github.com/wfbatch)"
REQUEST_ID_LIMIT = 200  # a request id longer than this is a hostile header, not an id
# No connection at all (refused, DNS, TLS, a proxy): the failures `Unreachable` counts. A reset or a
# slow answer after connecting means the provider is there: transient, retried, never a pause.
_CONNECTION_ERRORS = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
)


@dataclass(frozen=True)
class HttpLimits:
    request_timeout: float = 60.0
    """Per connect/read/write (httpx's timeouts)."""
    request_deadline: float = 120.0
    """The whole request, body included."""
    max_response_bytes: int = 64 * 1024 * 1024
    unreachable_after: int = 3

    @classmethod
    def of(cls, limits: ProviderLimits) -> HttpLimits:
        return cls(
            request_timeout=limits.request_timeout,
            request_deadline=limits.request_deadline,
            max_response_bytes=limits.max_response_bytes,
            unreachable_after=limits.unreachable_after,
        )


@dataclass(frozen=True)
class HttpAnswer:
    """One complete answer. `content` is raw (image bytes); `body` is the decoded JSON with every
    secret scrubbed (None when the content is not JSON); `request_id` is scrubbed too."""

    status: int
    headers: httpx.Headers
    content: bytes
    body: Any
    request_id: str | None
    what: str
    """`METHOD /path` for messages (scrubbed, no query string)."""

    def json_object(self) -> dict[str, Any]:
        """The body as a JSON object, or Transient (a malformed answer is worth another try)."""
        if not isinstance(self.body, dict):
            raise Transient(
                f"{self.what}: malformed or unexpected body in a {self.status} answer",
                status=self.status,
                request_id=self.request_id,
            )
        return self.body


Classify = Callable[[HttpAnswer], ProviderError | None]
FormValue = str | tuple[str, bytes, str]
FormFields = Mapping[str, FormValue] | Sequence[tuple[str, FormValue]]
"""A multipart form: by name, or as (name, value) pairs where a name repeats (OpenAI's `image[]`)."""
"""A multipart field: text, or a file as (filename, bytes, content type)."""
"""A provider's reading of an error answer's body; None leaves it to the status mapping."""


class ResponseTooLarge(Permanent):
    """The answer went past `max_response_bytes`: aborted unread."""


class HttpLayer:
    def __init__(
        self,
        provider: str,
        gate: RequestGate,
        limits: HttpLimits,
        *,
        secrets: Iterable[str | None] = (),
        key_setting: str | None = None,
        classify: Classify | None = None,
        dialect: RateLimitDialect = no_dialect,
        request_id_header: str = "x-request-id",
        transport: httpx.AsyncBaseTransport | None = None,
        follow_redirects: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.provider = provider
        self.limits = limits
        self.scrubber = Scrubber(secrets)
        self._gate = gate
        self._key_setting = key_setting
        self._classify = classify
        self._dialect = dialect
        self._request_id_header = request_id_header
        self._client = httpx.AsyncClient(
            transport=transport,
            follow_redirects=follow_redirects,
            timeout=httpx.Timeout(limits.request_timeout),
            headers={"User-Agent": USER_AGENT, **(headers or {})},
        )
        self.connection_failures = 0
        """Consecutive requests that got no HTTP answer at all."""

    async def aclose(self) -> None:
        await self._client.aclose()

    def scrub(self, text: str) -> str:
        return self.scrubber.text(text)

    async def send(
        self,
        kind: RequestKind | None,
        method: str,
        url: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        check: bool = True,
        decode: bool = True,
        priority: float = 0.0,
        form: FormFields | None = None,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> HttpAnswer:
        """One request. `kind=None` bypasses the gate (CDN downloads are not API requests). With
        `check`, a non-2xx answer raises its typed error; `decode` parses the body as JSON.
        `priority` orders requests waiting at the gate (polls: how long the execution has run).
        `form` is sent as multipart/form-data (httpx writes the boundary): a text field, or a file as
        (filename, bytes, content type); `params` is the query; `content` a raw body (an upload)."""
        what = self.scrub(f"{method} {urlsplit(url).path or url}")
        if kind is not None:
            await self._gate.acquire(kind, priority)
        try:
            response, received = await self._exchange(
                method, url, what, json=json, headers=headers, form=form, params=params, content=content
            )
        except ProviderError as failure:
            failure.start_not_sent = kind is RequestKind.START and failure.connection_failed
            raise
        self.connection_failures = 0
        if kind is not None:
            self._gate.observe(kind, response.status_code, response.headers)
        request_id = response.headers.get(self._request_id_header)
        if request_id is not None:
            request_id = self.scrub(request_id)[:REQUEST_ID_LIMIT]
        body = self._decode(received) if decode or not 200 <= response.status_code < 300 else None
        answer = HttpAnswer(response.status_code, response.headers, received, body, request_id, what)
        if check and not 200 <= answer.status < 300:
            raise self.error(answer)
        return answer

    def error(self, answer: HttpAnswer) -> ProviderError:
        """The typed error for a non-2xx answer: the provider's hook first, then the status."""
        error = self._classify(answer) if self._classify is not None else None
        if error is None:
            now = time.time()
            error = cls.classify_status(
                self.provider,
                answer.status,
                answer.headers,
                answer.body,
                self.message(answer),
                request_id=answer.request_id,
                now=now,
                reset_at=self._dialect(answer.headers, now).reset_at,
                key_setting=self._key_setting,
            )
        return cls.obey_should_retry(error, answer.headers)

    def message(self, answer: HttpAnswer) -> str:
        """What the answer says went wrong, scrubbed and short."""
        found = cls.error_message(answer.body)
        if found is None:
            found = cls.snippet(answer.content[:4096].decode("utf-8", "replace"))
        return self.scrub(found or f"HTTP {answer.status}")

    # -- internals ---------------------------------------------------------------------------

    def _decode(self, content: bytes) -> Any:
        if not content:
            return None
        try:
            return self.scrubber.json(jsonlib.loads(content))
        except (ValueError, RecursionError):  # RecursionError: a hostile, deeply nested document
            return None

    async def stream_lines(
        self,
        kind: RequestKind,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        max_bytes: int,
        deadline: float,
    ) -> AsyncIterator[bytes]:
        """The lines of a (large) GET answer, one at a time, without holding the body: a file of
        base64 images can be gigabytes. `max_bytes` caps the whole body, `max_response_bytes` each
        line, `deadline` the network part of the download (the caller's work on each line is not
        counted); a non-2xx answer raises its typed error."""
        what = self.scrub(f"GET {urlsplit(url).path or url}")
        await self._gate.acquire(kind)
        line_cap = self.limits.max_response_bytes
        # The deadline is checked around each network wait only: a timeout armed across a `yield`
        # would cancel the consumer's own work and surface as a bare CancelledError.
        end = asyncio.get_running_loop().time() + deadline
        try:
            async with contextlib.AsyncExitStack() as stack:
                async with asyncio.timeout_at(end):
                    response = await stack.enter_async_context(
                        self._client.stream("GET", url, headers=headers)
                    )
                    self.connection_failures = 0
                    self._gate.observe(kind, response.status_code, response.headers)
                    if not 200 <= response.status_code < 300:
                        content = await self._read_capped(response, what)
                        raise self.error(self._answer(response, content, what))
                chunks = response.aiter_bytes().__aiter__()
                received = 0
                pending = bytearray()
                while True:
                    async with asyncio.timeout_at(end):
                        chunk = await anext(chunks, None)
                    if chunk is None:
                        break
                    received += len(chunk)
                    if received > max_bytes:
                        raise ResponseTooLarge(f"{what}: file larger than {max_bytes} bytes; aborted")
                    pending += chunk
                    while (newline := pending.find(b"\n")) >= 0:
                        line = bytes(pending[:newline])
                        del pending[: newline + 1]
                        if line.strip():
                            yield line
                    if len(pending) > line_cap:
                        raise ResponseTooLarge(
                            f"{what}: a line longer than max_response_bytes = {line_cap}; aborted"
                        )
                if pending.strip():
                    yield bytes(pending)
        except TimeoutError as exc:
            raise Transient(f"{what}: not downloaded within {deadline:g} s") from exc
        except httpx.RequestError as exc:
            raise self._request_failure(exc, what) from exc

    def _answer(self, response: httpx.Response, content: bytes, what: str) -> HttpAnswer:
        request_id = response.headers.get(self._request_id_header)
        request_id = None if request_id is None else self.scrub(request_id)[:REQUEST_ID_LIMIT]
        return HttpAnswer(
            response.status_code, response.headers, content, self._decode(content), request_id, what
        )

    async def _exchange(
        self,
        method: str,
        url: str,
        what: str,
        *,
        json: Any,
        headers: Mapping[str, str] | None,
        form: FormFields | None = None,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> tuple[httpx.Response, bytes]:
        deadline = self.limits.request_deadline
        # Every field as a (None, value) file part: multipart/form-data even without a file, which is
        # what Stability requires (httpx would send plain `data` url-encoded).
        pairs = (form.items() if isinstance(form, Mapping) else form) if form is not None else None
        files = (
            [(name, value if isinstance(value, tuple) else (None, value)) for name, value in pairs]
            if pairs is not None
            else None
        )
        try:
            async with asyncio.timeout(deadline):
                async with self._client.stream(
                    method, url, json=json, headers=headers, files=files, params=params, content=content
                ) as response:
                    return response, await self._read_capped(response, what)
        except TimeoutError as exc:
            raise Transient(f"{what}: no complete answer within {deadline:g} s") from exc
        except httpx.RequestError as exc:
            raise self._request_failure(exc, what) from exc

    async def _read_capped(self, response: httpx.Response, what: str) -> bytes:
        cap = self.limits.max_response_bytes
        request_id = response.headers.get(self._request_id_header)
        request_id = None if request_id is None else self.scrub(request_id)[:REQUEST_ID_LIMIT]
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise self._too_large(what, response.status_code, request_id, f"declared {int(declared)} bytes")
        received = bytearray()
        # aiter_bytes yields decoded bytes: a small gzip bomb is counted at its inflated size.
        async for chunk in response.aiter_bytes():
            if len(received) + len(chunk) > cap:
                raise self._too_large(what, response.status_code, request_id, "still sending")
            received += chunk
        return bytes(received)

    def _too_large(self, what: str, status: int, request_id: str | None, detail: str) -> ResponseTooLarge:
        cap = self.limits.max_response_bytes
        return ResponseTooLarge(
            f"{what}: answer too large (over max_response_bytes = {cap} bytes, {detail}); aborted",
            status=status,
            request_id=request_id,
        )

    def _request_failure(self, exc: httpx.RequestError, what: str) -> Transient:
        """A request that got no complete answer from httpx (a timeout, a reset, no connection)."""
        if isinstance(exc, httpx.TimeoutException):
            failure = Transient(
                f"{what}: no answer within {self.limits.request_timeout:g}s ({type(exc).__name__})"
            )
            return self._connection_failed(failure, isinstance(exc, httpx.ConnectTimeout))
        failure = Transient(self.scrub(f"{what}: {type(exc).__name__}: {exc}"))
        return self._connection_failed(failure, isinstance(exc, _CONNECTION_ERRORS))

    def _connection_failed(self, failure: Transient, no_answer: bool) -> Transient:
        if not no_answer:
            return failure
        self.connection_failures += 1
        failure.connection_failed = True
        if self.connection_failures >= self.limits.unreachable_after:
            unreachable = Unreachable(
                f"{self.provider}: unreachable ({self.connection_failures} connection failures in a row;"
                f" last: {failure.message})"
            )
            unreachable.connection_failed = True
            return unreachable
        return failure
