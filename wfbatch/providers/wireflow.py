"""Wireflow (providers.md §1): start a workflow execution, poll it, download its images.

Three ways to start, by `settings.mode`:
- `execute` (default): fetch the workflow graph once, write each job into a copy of it and
  `POST /workflows/{id}/execute`;
- `run`: `POST /workflows/{id}/run` with `{"inputs": {...}}` for the published inputs;
- `webhook`: `POST /workflow/{webhookId}/trigger` (no API key), results polled with the key.

Every API request first awaits the engine's gate and reports its answer back to it; image
downloads go to a CDN and bypass the gate. The API key is a `SecretStr` unwrapped only while a
request's headers are built, and scrubbed from any text that could end up in an error.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx

from wfbatch.core.models import JobSpec
from wfbatch.providers import wireflow_bodies as bodies
from wfbatch.providers import wireflow_parse as parse
from wfbatch.providers.base import Finished, Image, Pending, RequestGate, RequestKind, Submitted
from wfbatch.providers.errors import OutOfCredits, Permanent, ProviderError, RateLimited, Transient
from wfbatch.settings import WireflowSettings

USER_AGENT = "wfbatch/0.1 (+https://github.com/wfbatch)"
_TAGS = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"\s+")


class WireflowConfigError(ValueError):
    """The Wireflow settings cannot work: a missing API key, workflow id or input node id."""


@dataclass(frozen=True)
class _Reply:
    status: int
    body: dict[str, Any]
    request_id: str | None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _snippet(text: str, limit: int = 200) -> str:
    """Readable text from a non-JSON error body (a proxy's HTML page, say)."""
    text = _SPACES.sub(" ", _TAGS.sub(" ", text)).strip()
    return text[:limit]


class WireflowProvider:
    name = "wireflow"
    starts_count_as_requests = False  # docs: executions/min covers starts, requests/min the rest

    def __init__(
        self,
        settings: WireflowSettings,
        gate: RequestGate,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if settings.api_key is None or not settings.api_key.get_secret_value().strip():
            raise WireflowConfigError(
                "Wireflow needs an API key: set WFBATCH_WIREFLOW__API_KEY (or api_key under "
                "[wireflow] in wfbatch.toml)"
            )
        if not settings.workflow_id:
            raise WireflowConfigError(
                "Wireflow needs the id of the workflow to run: set WFBATCH_WIREFLOW__WORKFLOW_ID"
            )
        if settings.mode == "run" and not settings.prompt_node_id:
            raise WireflowConfigError(
                "Wireflow mode 'run' needs the node id of the prompt input: set "
                "WFBATCH_WIREFLOW__PROMPT_NODE_ID (GET /workflows/{id}/run lists the inputs)"
            )
        self._settings = settings
        self._gate = gate
        self._base = settings.base_url.rstrip("/")
        self._workflow_id = settings.workflow_id
        self._hook_id = settings.webhook_id or settings.workflow_id  # docs: the workflow id works too
        self._client = httpx.AsyncClient(
            transport=transport,
            follow_redirects=True,  # wireflow.ai 308s to www.; POST bodies survive a 308
            timeout=httpx.Timeout(settings.request_timeout),
            headers={"User-Agent": USER_AGENT},
        )
        self._graph: dict[str, Any] | None = None
        self._graph_lock = asyncio.Lock()
        host = urlsplit(self._base).netloc or self._base
        where = f"workflow {self._workflow_id} at {host}"
        if settings.mode != "execute":
            where += f", {settings.mode} mode"
        if _is_loopback(urlsplit(self._base).hostname or ""):
            where += "; a local address, e.g. the wfbatch simulator"
        self.label = f"wireflow ({where})"

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
        return Submitted(remote_id=remote_id, http_status=reply.status, request_id=reply.request_id)

    async def poll(self, remote_id: str) -> Pending | Finished:
        path = f"/workflows/executions/{quote(remote_id, safe='')}/poll"
        reply = await self._send(RequestKind.POLL, "GET", path)
        return self._outcome(remote_id, reply, require_status=True)

    async def download(self, finished: Finished) -> list[Image]:
        if finished.images:
            return list(finished.images)
        return [await self._download(url) for url in finished.urls]

    async def aclose(self) -> None:
        await self._client.aclose()

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

    def _outcome(self, remote_id: str, reply: _Reply, *, require_status: bool) -> Pending | Finished:
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
                self._scrub(parse.failure_message(reply.body)),
                status=reply.status,
                request_id=reply.request_id,
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
    ) -> _Reply:
        """One API request through the gate; a 2xx JSON object back, or a typed error."""
        request_headers = {"Accept": "application/json", **(headers or {})}
        if auth and self._settings.api_key is not None:
            request_headers["Authorization"] = f"Bearer {self._settings.api_key.get_secret_value()}"
        await self._gate.acquire(kind)
        try:
            response = await self._client.request(
                method, self._base + path, json=json, headers=request_headers
            )
        except httpx.TimeoutException as exc:
            raise Transient(
                f"{method} {path}: no answer within {self._settings.request_timeout:g}s "
                f"({type(exc).__name__})"
            ) from exc
        except httpx.RequestError as exc:
            raise Transient(self._scrub(f"{method} {path}: {type(exc).__name__}: {exc}")) from exc
        self._gate.observe(kind, response.status_code, response.headers)
        request_id = response.headers.get("x-request-id")
        if not 200 <= response.status_code < 300:
            raise self._error(response, request_id)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise Transient(
                f"{method} {path}: malformed or unexpected body in a {response.status_code} answer",
                status=response.status_code,
                request_id=request_id,
            )
        return _Reply(response.status_code, body, request_id)

    def _error(self, response: httpx.Response, request_id: str | None) -> ProviderError:
        status = response.status_code
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        message = (
            parse.error_message(body) or _snippet(response.text) or f"HTTP {status} {response.reason_phrase}"
        )
        message = self._scrub(message)
        if status == 402 or parse.is_out_of_credits(body):
            required, available, breakdown = parse.credit_figures(body, message)
            return OutOfCredits(
                message,
                required=required,
                available=available,
                breakdown=breakdown,
                status=status,
                request_id=request_id,
            )
        if status == 429:
            delay = parse.retry_after(response.headers, body, time.time())
            return RateLimited(message, retry_after=delay, status=status, request_id=request_id)
        if status in (408, 425) or status >= 500:
            return Transient(message, status=status, request_id=request_id)
        if 400 <= status < 500:
            return Permanent(message, status=status, request_id=request_id)
        return Transient(f"unexpected HTTP {status}: {message}", status=status, request_id=request_id)

    async def _download(self, url: str) -> Image:
        """GET one image (no API key: it is a CDN URL). The CDN refuses some clients (403); the docs
        offer an unauthenticated proxy, tried once in that case."""
        response = await self._fetch(url)
        if response.status_code == 403:
            origin = urlsplit(self._base)
            proxy = f"{origin.scheme}://{origin.netloc}/api/download?{urlencode({'url': url})}"
            response = await self._fetch(proxy)
        request_id = response.headers.get("x-request-id")
        if response.status_code != 200:
            raise Transient(
                f"image download answered HTTP {response.status_code}: {url}",
                status=response.status_code,
                request_id=request_id,
            )
        data = response.content
        declared = response.headers.get("content-type", "").split(";")[0].strip().lower()
        media_type = parse.sniff_image(data) or (declared if declared.startswith("image/") else None)
        if not data or media_type is None:
            what = "an empty body" if not data else f"{declared or 'untyped'} content, not an image"
            raise Transient(f"image download returned {what}: {url}", status=200, request_id=request_id)
        return Image(data=data, media_type=media_type, metadata={"url": url})

    async def _fetch(self, url: str) -> httpx.Response:
        try:
            return await self._client.get(url, headers={"Accept": "image/*"})
        except httpx.TimeoutException as exc:
            raise Transient(f"image download timed out: {url}") from exc
        except httpx.RequestError as exc:
            raise Transient(f"image download failed ({type(exc).__name__}: {exc}): {url}") from exc

    def _scrub(self, text: str) -> str:
        """Never let the key into a message, even if a server echoes it back."""
        key = self._settings.api_key.get_secret_value() if self._settings.api_key else ""
        return text.replace(key, "**********") if key else text
