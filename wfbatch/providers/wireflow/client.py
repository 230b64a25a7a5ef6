"""Wireflow (providers.md §1): start a workflow execution, poll it, download its images.

Three ways to start, by `settings.mode`:
- `execute` (default): fetch the workflow graph once, write each job into a copy of it and
  `POST /workflows/{id}/execute`;
- `run`: `POST /workflows/{id}/run` with `{"inputs": {...}}` for the published inputs;
- `webhook`: `POST /workflow/{webhookId}/trigger` (no API key), results polled with the key.

Every request goes through the shared HTTP layer (`providers/http`): API requests await the
engine's gate and report their answer back to it; image downloads go to a CDN and bypass the gate.
The layer caps bodies, bounds each request's wall-clock time and scrubs the key from everything the
server sends back; this module only knows Wireflow's shapes. The API key is a `SecretStr` unwrapped
only while a request's headers are built.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx

from wfbatch.core.models import JobSpec
from wfbatch.providers.base import (
    Finished,
    Image,
    Pending,
    RemoteHandle,
    RequestGate,
    RequestKind,
    Submitted,
)
from wfbatch.providers.errors import OutOfCredits, Permanent, ProviderError, RateLimited, Transient
from wfbatch.providers.http import HttpAnswer
from wfbatch.providers.http.headers import x_ratelimit_dialect
from wfbatch.providers.http.provider import HttpProvider, HttpStyle, ProviderConfigError
from wfbatch.providers.wireflow import bodies, parse
from wfbatch.providers.wireflow.settings import WireflowSettings


class WireflowConfigError(ProviderConfigError):
    """The Wireflow settings cannot work: a missing API key, workflow id or input node id."""


def classify(answer: HttpAnswer) -> ProviderError | None:
    """Wireflow's error bodies: a 402 (or an insufficient-credits envelope) with its figures, a 429
    whose delay may be in the body, and its 409s (`stale_write`, an Idempotency-Key reused with
    another body), which the same request sent again cannot fix — unlike the generic 409."""
    body = answer.body
    message = parse.error_message(body) or f"HTTP {answer.status}"
    if answer.status == 402 or parse.is_out_of_credits(body):
        required, available, breakdown = parse.credit_figures(body, message)
        return OutOfCredits(
            message,
            required=required,
            available=available,
            breakdown=breakdown,
            status=answer.status,
            request_id=answer.request_id,
        )
    if answer.status == 429:
        delay = parse.retry_after(answer.headers, body, time.time())
        return RateLimited(message, retry_after=delay, status=answer.status, request_id=answer.request_id)
    if answer.status == 409:
        return Permanent(message, status=answer.status, request_id=answer.request_id)
    return None


class WireflowProvider(HttpProvider[WireflowSettings]):
    """No remote cancel: Wireflow documents none (`cancel` stays False)."""

    name = "wireflow"
    config_error = WireflowConfigError
    # wireflow.ai 308s to www.; POST bodies survive a 308
    style = HttpStyle(dialect=x_ratelimit_dialect, follow_redirects=True)

    def __init__(
        self,
        settings: WireflowSettings,
        gate: RequestGate,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(settings, gate, transport=transport)
        self._workflow_id = settings.workflow_id or ""  # configuration_problems() insisted on one
        self._hook_id = settings.webhook_id or self._workflow_id  # docs: the workflow id works too
        self._graph: dict[str, Any] | None = None
        self._graph_lock = asyncio.Lock()

    def read_error(self, answer: HttpAnswer) -> ProviderError | None:
        return classify(answer)

    def __repr__(self) -> str:
        return (
            f"WireflowProvider(workflow_id={self._workflow_id!r}, mode={self._settings.mode!r}, "
            f"base_url={self._base!r})"
        )

    # -- the protocol ------------------------------------------------------------------------

    async def submit(self, spec: JobSpec, idempotency_key: str) -> Submitted | Finished:
        s = self._settings
        headers = {"Idempotency-Key": idempotency_key}
        wf = quote(self._workflow_id, safe="")
        if s.mode == "execute":
            graph = await self._workflow_graph()
            body = bodies.execute_body(
                graph, spec, prompt_node_id=s.prompt_node_id, seed_node_id=s.seed_node_id
            )
            reply = await self._send(
                RequestKind.START, "POST", f"/workflows/{wf}/execute", json=body, headers=headers
            )
        elif s.mode == "run":
            body = bodies.run_body(spec, prompt_node_id=s.prompt_node_id or "", seed_node_id=s.seed_node_id)
            reply = await self._send(
                RequestKind.START, "POST", f"/workflows/{wf}/run", json=body, headers=headers
            )
        else:
            hook = quote(self._hook_id, safe="")
            reply = await self._send(
                RequestKind.START,
                "POST",
                f"/workflow/{hook}/trigger",
                json=bodies.trigger_body(spec),
                headers=headers,
                auth=False,
            )
        remote_id = parse.execution_id(reply.body)
        if remote_id is None:
            raise Transient(
                "the start was answered without an execution id",
                status=reply.status,
                request_id=reply.request_id,
            )
        outcome = self._outcome(remote_id, reply, require_status=False)
        if isinstance(outcome, Finished):
            return outcome
        return Submitted(
            remote_id=remote_id,
            handle={"execution_id": remote_id},
            http_status=reply.status,
            request_id=reply.request_id,
        )

    async def poll(self, handle: RemoteHandle, *, priority: float = 0.0) -> Pending | Finished:
        remote_id = handle.get("execution_id")
        if not isinstance(remote_id, str) or not remote_id:
            raise Permanent(f"not a Wireflow poll handle: {sorted(handle)}")
        path = f"/workflows/executions/{quote(remote_id, safe='')}/poll"
        reply = await self._send(RequestKind.POLL, "GET", path, priority=priority)
        return self._outcome(remote_id, reply, require_status=True)

    async def download(self, finished: Finished) -> list[Image]:
        if finished.images:
            return list(finished.images)
        return [await self._download(url) for url in finished.urls]

    # -- credits -----------------------------------------------------------------------------

    async def balance(self) -> float | None:
        """The account's credit balance (`GET /developer/usage`), None if the answer has none."""
        reply = await self._send(RequestKind.OTHER, "GET", "/developer/usage")
        return parse.balance(reply.body)

    async def estimate(self, spec: JobSpec) -> float | None:
        """Predicted credits for one run of the workflow; None unless the estimate is complete."""
        wf = quote(self._workflow_id, safe="")
        reply = await self._send(RequestKind.OTHER, "POST", f"/workflows/{wf}/estimate", json={})
        return parse.estimate(reply.body)

    # -- internals ---------------------------------------------------------------------------

    def _outcome(self, remote_id: str, reply: HttpAnswer, *, require_status: bool) -> Pending | Finished:
        """Read an execution's state from a poll (or a start) answer."""
        state = parse.status(reply.body)
        if state is None:
            if require_status:
                raise Transient(
                    "the poll answer has no status", status=reply.status, request_id=reply.request_id
                )
            state = "RUNNING"
        if state == "COMPLETED":
            urls = parse.image_urls(reply.body)
            if not urls:
                raise Permanent(
                    "execution completed without an image", status=reply.status, request_id=reply.request_id
                )
            return Finished(
                remote_id=remote_id,
                urls=tuple(urls),
                credits_used=parse.credits_used(reply.body),
                http_status=reply.status,
                request_id=reply.request_id,
                metadata={"workflow_id": self._workflow_id, "mode": self._settings.mode, "status": state},
            )
        if state == "FAILED":
            raise Permanent(
                parse.failure_message(reply.body), status=reply.status, request_id=reply.request_id
            )
        if state in ("CANCELLED", "CANCELED"):
            raise Permanent("execution was cancelled", status=reply.status, request_id=reply.request_id)
        return Pending(
            remote_id=remote_id, status=state, http_status=reply.status, request_id=reply.request_id
        )

    async def _workflow_graph(self) -> dict[str, Any]:
        """`GET /workflows/{id}` once; every job writes into a deep copy of it."""
        async with self._graph_lock:
            if self._graph is None:
                reply = await self._send(
                    RequestKind.OTHER, "GET", f"/workflows/{quote(self._workflow_id, safe='')}"
                )
                graph = parse.find_graph(reply.body)
                if graph is None:
                    raise Transient(
                        "the workflow answer has no graph (nodes)",
                        status=reply.status,
                        request_id=reply.request_id,
                    )
                self._graph = graph
            return self._graph

    async def _send(
        self,
        kind: RequestKind,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        priority: float = 0.0,
    ) -> HttpAnswer:
        """One API request through the layer; a 2xx JSON object back, or a typed error."""
        request_headers = {"Accept": "application/json", **(headers or {})}
        if auth:
            request_headers.update(self.auth_headers())
        answer = await self._http.send(
            kind, method, self._base + path, json=json, headers=request_headers, priority=priority
        )
        answer.json_object()
        return answer

    async def _download(self, url: str) -> Image:
        """GET one image (no API key: it is a CDN URL). The CDN refuses some clients (403); the docs
        offer an unauthenticated proxy, tried once in that case."""
        answer = await self._fetch(url)
        if answer.status == 403:
            origin = urlsplit(self._base)
            proxy = f"{origin.scheme}://{origin.netloc}/api/download?{urlencode({'url': url})}"
            answer = await self._fetch(proxy)
        if answer.status != 200:
            raise Transient(
                f"image download answered HTTP {answer.status}: {url}",
                status=answer.status,
                request_id=answer.request_id,
            )
        data = answer.content
        declared = answer.headers.get("content-type", "").split(";")[0].strip().lower()
        media_type = parse.sniff_image(data) or (declared if declared.startswith("image/") else None)
        if not data or media_type is None:
            what = "an empty body" if not data else f"{declared or 'untyped'} content, not an image"
            raise Transient(
                f"image download returned {what}: {url}", status=200, request_id=answer.request_id
            )
        return Image(data=data, media_type=media_type, metadata={"url": url})

    async def _fetch(self, url: str) -> HttpAnswer:
        try:
            return await self._http.send(
                None, "GET", url, headers={"Accept": "image/*"}, check=False, decode=False
            )
        except Transient as error:
            error.message = f"image download failed ({error.message}): {url}"
            error.args = (error.message,)
            raise
