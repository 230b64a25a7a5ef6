"""`DaemonClient`: typed calls to the daemon's `/v1` API over its Unix socket."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpcore
import httpx
from httpx_sse import aconnect_sse
from pydantic import BaseModel, ValidationError

from wfbatch.client.peer import PeerCheckingBackend
from wfbatch.home import MAX_SOCKET_PATH_BYTES
from wfbatch.protocol import (
    API_VERSION,
    BatchSummary,
    BudgetRequest,
    CancelRequest,
    CommandResult,
    EditRequest,
    Event,
    Health,
    JobDetail,
    JobSummary,
    Page,
    PauseRequest,
    PriorityRequest,
    ResyncEvent,
    RetryRequest,
    ReviewRequest,
    Status,
    SubmitRequest,
    SubmitResult,
    WeightRequest,
    parse_event,
    routes,
)

M = TypeVar("M", bound=BaseModel)

# The host part is ignored over a Unix socket, but HTTP needs one.
BASE_URL = "http://wfbatch"


class DaemonUnavailable(Exception):
    """Nothing answers on the socket: the daemon is not running (or runs with another HOME)."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        super().__init__(
            f"no wfbatch daemon answers on {socket_path}{_why_not_a_socket(socket_path)}; start one "
            "with `wfbatch daemon` (same WFBATCH_HOME), or run files directly with `wfbatch run FILE`"
        )


def _why_not_a_socket(path: Path) -> str:
    """A hint when the path cannot be a socket at all (too long, a plain file, a file for a folder)."""
    length = len(os.fsencode(path))
    if length > MAX_SOCKET_PATH_BYTES:
        return f" (the path is {length} bytes; a Unix socket path has at most {MAX_SOCKET_PATH_BYTES})"
    try:
        mode = path.stat().st_mode
    except NotADirectoryError:
        return f" ({path.parent} is not a folder)"
    except OSError:
        return ""
    return "" if stat.S_ISSOCK(mode) else " (it is not a socket)"


def _transport(socket_path: Path) -> httpx.AsyncHTTPTransport:
    """httpx's transport over the socket, its pool built with a backend that checks who listens
    (`wfbatch.client.peer`) on every connection. httpx has no public way to hand a backend down,
    so its pool is replaced with an equivalent one (httpx's default limits)."""
    transport = httpx.AsyncHTTPTransport(uds=str(socket_path))
    transport._pool = httpcore.AsyncConnectionPool(
        uds=str(socket_path),
        max_connections=100,
        max_keepalive_connections=20,
        keepalive_expiry=5.0,
        network_backend=PeerCheckingBackend(),
    )
    return transport


class VersionMismatch(Exception):
    """The daemon speaks another version of the API than this client: no call is made."""

    def __init__(self, socket_path: Path, theirs: object, version: object = None) -> None:
        self.socket_path = socket_path
        self.theirs = theirs
        speaks = f"speaks API v{theirs}" if theirs is not None else "does not say its API version"
        built = f" (wfbatch {version})" if version else ""
        super().__init__(
            f"the daemon at {socket_path} {speaks}{built}, this wfbatch speaks v{API_VERSION}: "
            "restart the daemon with this wfbatch (`wfbatch daemon`) or use the matching CLI"
        )


class ApiError(Exception):
    """The daemon answered with an error status; `detail` carries its explanation."""

    def __init__(self, status: int, error: str, detail: Any = None) -> None:
        self.status = status
        self.error = error
        self.detail = detail
        super().__init__(f"{error} (HTTP {status})")


class DaemonClient:
    def __init__(
        self,
        socket_path: Path,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`transport`: what carries the requests, as in httpx; by default the daemon's Unix socket
        at `socket_path` (`_transport`). Tests hand in an `httpx.MockTransport` (or an
        `httpx.ASGITransport` of an app) to run this client, unchanged, without a socket;
        `socket_path` then only names the daemon in messages."""
        self.socket_path = socket_path
        self._http = httpx.AsyncClient(
            transport=transport if transport is not None else _transport(socket_path),
            base_url=BASE_URL,
            timeout=timeout,
        )
        self._version_checked = False

    async def __aenter__(self) -> DaemonClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- plumbing -----------------------------------------------------------------------------

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if not self._version_checked and path != routes.HEALTH:
            await self.health()
        try:
            response = await self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as error:
            raise DaemonUnavailable(self.socket_path) from error
        if response.status_code >= 400:
            try:
                body = response.json()
                raise ApiError(
                    response.status_code, str(body.get("error", response.reason_phrase)), body.get("detail")
                )
            except (json.JSONDecodeError, AttributeError):
                raise ApiError(response.status_code, response.text or response.reason_phrase) from None
        return response

    async def _get(self, path: str, model: type[M], params: dict[str, Any] | None = None) -> M:
        response = await self._request(
            "GET", path, params={k: v for k, v in (params or {}).items() if v is not None}
        )
        return model.model_validate(response.json())

    async def _post(self, path: str, body: BaseModel | None, model: type[M]) -> M:
        payload = body.model_dump(mode="json") if body is not None else {}
        response = await self._request("POST", path, json=payload)
        return model.model_validate(response.json())

    # -- calls --------------------------------------------------------------------------------

    async def health(self) -> Health:
        """The daemon's health; raises `VersionMismatch` (before any other call is made, as every
        first call checks) when it speaks another API version."""
        try:
            response = await self._request("GET", routes.HEALTH)
        except ApiError as error:
            if error.status == 404:  # a daemon without /v1 at all
                raise VersionMismatch(self.socket_path, None) from None
            raise
        body = response.json()
        body = body if isinstance(body, dict) else {}
        # The version is read before the rest: another version's health may not fit our model.
        if body.get("api_version") != API_VERSION:
            raise VersionMismatch(self.socket_path, body.get("api_version"), body.get("version"))
        self._version_checked = True
        return Health.model_validate(body)

    async def status(self) -> Status:
        return await self._get(routes.STATUS, Status)

    async def batches(self, *, limit: int = 50, cursor: str | None = None) -> Page[BatchSummary]:
        return await self._get(routes.BATCHES, Page[BatchSummary], {"limit": limit, "cursor": cursor})

    async def batch(self, batch_id: str) -> BatchSummary:
        return await self._get(routes.BATCH.format(batch_id=batch_id), BatchSummary)

    async def jobs(
        self,
        *,
        states: Sequence[str] = (),
        batch_id: str | None = None,
        text: str | None = None,
        review: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[JobSummary]:
        params = {
            "state": ",".join(states) or None,
            "batch": batch_id,
            "q": text or None,
            "review": review,
            "cursor": cursor,
            "limit": limit,
        }
        return await self._get(routes.JOBS, Page[JobSummary], params)

    async def job(self, job_id: int) -> JobDetail:
        return await self._get(routes.JOB.format(job_id=job_id), JobDetail)

    async def retry(self, request: RetryRequest) -> CommandResult:
        return await self._post(routes.JOBS_RETRY, request, CommandResult)

    async def cancel(self, request: CancelRequest) -> CommandResult:
        return await self._post(routes.JOBS_CANCEL, request, CommandResult)

    async def edit(self, job_id: int, prompt: str) -> CommandResult:
        path = routes.JOB_EDIT.format(job_id=job_id)
        return await self._post(path, EditRequest(prompt=prompt), CommandResult)

    async def pause(self, request: PauseRequest) -> CommandResult:
        return await self._post(routes.PAUSE, request, CommandResult)

    async def resume(self, request: PauseRequest) -> CommandResult:
        return await self._post(routes.RESUME, request, CommandResult)

    async def set_budget(self, batch_id: str, budget: float | None) -> CommandResult:
        path = routes.BATCH_BUDGET.format(batch_id=batch_id)
        return await self._post(path, BudgetRequest(budget=budget), CommandResult)

    async def set_priority(self, batch_id: str, priority: int) -> CommandResult:
        path = routes.BATCH_PRIORITY.format(batch_id=batch_id)
        return await self._post(path, PriorityRequest(priority=priority), CommandResult)

    async def set_weight(self, batch_id: str, weight: float) -> CommandResult:
        path = routes.BATCH_WEIGHT.format(batch_id=batch_id)
        return await self._post(path, WeightRequest(weight=weight), CommandResult)

    async def review(self, request: ReviewRequest) -> CommandResult:
        return await self._post(routes.REVIEW, request, CommandResult)

    async def start_sidecar(self, name: str) -> CommandResult:
        """Have the daemon serve `name` (`web`) unless it does; returns once it serves."""
        return await self._post(routes.SIDECAR.format(name=name), None, CommandResult)

    async def submit(self, request: SubmitRequest) -> SubmitResult:
        """Submit prompts; validation errors come back in `SubmitResult.errors` (HTTP 422)."""
        try:
            return await self._post(routes.SUBMIT, request, SubmitResult)
        except ApiError as error:
            if error.status == 422 and isinstance(error.detail, dict):
                return SubmitResult.model_validate(error.detail)
            raise

    async def metrics(self) -> str:
        return (await self._request("GET", routes.METRICS)).text

    async def events(self) -> AsyncIterator[Event]:
        """Server-sent events until the connection ends (the caller reconnects if it wants).

        Kinds this client does not know are skipped; an event it cannot read comes as a
        `ResyncEvent`, the cue to re-read everything shown."""
        if not self._version_checked:
            await self.health()
        try:
            async with aconnect_sse(self._http, "GET", routes.EVENTS, timeout=None) as source:
                async for sse in source.aiter_sse():
                    if not sse.data:
                        continue
                    try:
                        event = parse_event(sse.data)
                    except ValidationError:
                        event = ResyncEvent(dropped=1)
                    if event is not None:
                        yield event
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as error:
            raise DaemonUnavailable(self.socket_path) from error
