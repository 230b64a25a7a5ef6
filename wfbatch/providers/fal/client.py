"""fal.ai queue API (providers.md §2): submit to `{base}/{endpoint}`, poll the `status_url` the
submit answered, fetch the `response_url`, download each image URL at once; `cancel_url` on a hand
cancel. The URLs are kept in the poll handle and used as given (a subpath endpoint's URLs differ
from its submit path).

Errors: fal's `detail` is a string or a list of `{loc, msg, type}`; branch on `type`, never on
`msg` (§2.7). `content_policy_violation` (on submit or on the result) is final for the prompt;
a 403 "User is locked …" (exhausted balance, admin lock) pauses the provider. fal retries its own
queue; we never resubmit behind the engine's back (no idempotency: the engine records a re-sent
start as a possible duplicate charge).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from wfbatch.core.models import JobSpec
from wfbatch.providers.base import (
    Finished,
    Image,
    Pending,
    RemoteHandle,
    RequestKind,
    Submitted,
)
from wfbatch.providers.errors import OutOfCredits, Permanent, ProviderError, Transient
from wfbatch.providers.fal import request
from wfbatch.providers.fal.prices import table_price
from wfbatch.providers.fal.settings import FalSettings
from wfbatch.providers.fal.storage import FalStorage
from wfbatch.providers.http import HttpAnswer
from wfbatch.providers.http.classify import MESSAGE_LIMIT
from wfbatch.providers.http.download import fetch_image
from wfbatch.providers.http.provider import HttpProvider, HttpStyle, ProviderConfigError

REQUEST_ID_HEADER = "x-fal-request-id"
_HANDLE_URLS = ("status_url", "response_url", "cancel_url")
_CANCEL_ACCEPTED = frozenset({"OK", "CANCELLATION_REQUESTED"})


class FalConfigError(ProviderConfigError):
    """The fal settings cannot work (no API key)."""


def detail_items(body: Any) -> list[dict[str, Any]]:
    """The `{loc, msg, type}` items of a validation-style `detail` list."""
    detail = body.get("detail") if isinstance(body, dict) else None
    return [item for item in detail if isinstance(item, dict)] if isinstance(detail, list) else []


def detail_message(body: Any) -> str | None:
    """`detail` as a string, or the `msg`s of its items; else `error` / `message`."""
    if not isinstance(body, dict):
        return None
    detail = body.get("detail")
    if isinstance(detail, str) and detail.strip():
        return detail.strip()[:MESSAGE_LIMIT]
    messages = [str(item.get("msg")) for item in detail_items(body) if item.get("msg")]
    if messages:
        return "; ".join(messages)[:MESSAGE_LIMIT]
    for key in ("error", "message"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:MESSAGE_LIMIT]
    return None


def error_types(answer: HttpAnswer) -> set[str]:
    types = {str(item.get("type")) for item in detail_items(answer.body) if item.get("type")}
    header = answer.headers.get("x-fal-error-type")
    if header:
        types.add(header.strip())
    if isinstance(answer.body, dict) and isinstance(answer.body.get("error_type"), str):
        types.add(answer.body["error_type"])
    return types


def classify(answer: HttpAnswer) -> ProviderError | None:
    message = detail_message(answer.body) or f"HTTP {answer.status}"
    if "content_policy_violation" in error_types(answer):
        return Permanent(
            f"fal: refused by the content policy (content_policy_violation): {message}",
            status=answer.status,
            request_id=answer.request_id,
        )
    if answer.status == 403 and "locked" in message.lower():
        # "User is locked. Reason: Exhausted balance…" (or an admin lock): no job can start until a
        # human tops up / unlocks; status GETs keep answering meanwhile (§2.7).
        return OutOfCredits(
            f"fal: account locked, out of credit or billing ({message})",
            status=answer.status,
            request_id=answer.request_id,
        )
    if answer.status == 422 or (400 <= answer.status < 500 and detail_items(answer.body)):
        kinds = ", ".join(sorted(error_types(answer))) or str(answer.status)
        return Permanent(
            f"fal: the endpoint refused the input ({kinds}): {message}",
            status=answer.status,
            request_id=answer.request_id,
        )
    return None


class FalProvider(HttpProvider[FalSettings]):
    name = "fal"
    config_error = FalConfigError
    style = HttpStyle(auth_scheme="Key", request_id_header=REQUEST_ID_HEADER)

    def read_error(self, answer: HttpAnswer) -> ProviderError | None:
        return classify(answer)

    # -- the protocol ------------------------------------------------------------------------

    async def submit(self, spec: JobSpec, idempotency_key: str) -> Submitted | Finished:
        endpoint = request.endpoint_of(spec, self._settings.model)
        body = request.model_input(spec)
        if spec.inputs or spec.strength is not None:
            storage_url = self._settings.storage_url
            storage = FalStorage(
                self._http, storage_url, self._authorization, self.upload_memo, self.upload_locks
            )
            # Params come last in the model input and win: they may rename a picture's field.
            body = {**body, **await storage.input_fields(spec), **spec.params}
        answer = await self._api(
            RequestKind.START,
            "POST",
            f"{self._base}/{quote(endpoint, safe='/')}",
            json=body,
        )
        body = answer.json_object()
        request_id = body.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise Transient(
                "fal: the submit was answered without a request_id",
                status=answer.status,
                request_id=answer.request_id,
            )
        # The answer's own URLs, used as given; built from the endpoint only when one is missing.
        app = quote(request.app_root(endpoint), safe="/")
        root = f"{self._base}/{app}/requests/{quote(request_id, safe='')}"
        built = {"status_url": f"{root}/status", "response_url": root, "cancel_url": f"{root}/cancel"}
        handle: RemoteHandle = {"request_id": request_id, "endpoint": endpoint}
        for key in _HANDLE_URLS:
            value = body.get(key)
            handle[key] = (
                value if isinstance(value, str) and value.startswith(("http://", "https://")) else built[key]
            )
        return Submitted(
            remote_id=request_id,
            handle=handle,
            http_status=answer.status,
            request_id=answer.request_id or request_id,
        )

    async def poll(self, handle: RemoteHandle, *, priority: float = 0.0) -> Pending | Finished:
        request_id, status_url = handle.get("request_id"), handle.get("status_url")
        if not isinstance(request_id, str) or not isinstance(status_url, str):
            raise Permanent(f"not a fal poll handle: {sorted(handle)}")
        answer = await self._api(RequestKind.POLL, "GET", status_url, priority=priority)
        body = answer.json_object()
        status = str(body.get("status") or "").strip().upper()
        if status == "IN_QUEUE":
            position = body.get("queue_position")
            where = f" (queue position {position})" if isinstance(position, int) else ""
            return Pending(request_id, f"IN_QUEUE{where}", answer.status, answer.request_id or request_id)
        if status == "COMPLETED" or body.get("error"):
            return await self._result(handle, body)
        # IN_PROGRESS, or a status fal does not document: keep polling (max_run_seconds bounds it).
        return Pending(request_id, status or "unknown", answer.status, answer.request_id or request_id)

    async def download(self, finished: Finished) -> list[Image]:
        if finished.images:
            return list(finished.images)
        hint = "fal keeps outputs at least 7 days; this one was deleted"
        return [await fetch_image(self._http, url, gone_hint=hint) for url in finished.urls]

    async def cancel(self, handle: RemoteHandle) -> bool:
        """`PUT cancel_url`. Three answer shapes exist (§2.4): `{"status": OK | CANCELLATION_REQUESTED
        | ALREADY_COMPLETED | NOT_FOUND}`, `{"success": bool}`, or a bare 202."""
        url = handle.get("cancel_url")
        if not isinstance(url, str):
            return False
        answer = await self._http.send(
            RequestKind.OTHER, "PUT", url, headers={"Authorization": self._authorization}, check=False
        )
        body = answer.body if isinstance(answer.body, dict) else {}
        if isinstance(body.get("success"), bool):
            return bool(body["success"])
        status = body.get("status")
        if isinstance(status, str):
            return status.strip().upper() in _CANCEL_ACCEPTED
        return 200 <= answer.status < 300

    async def estimate(self, spec: JobSpec) -> float | None:
        return self._price(request.endpoint_of(spec, self._settings.model), spec.width, spec.height)

    # -- internals ---------------------------------------------------------------------------

    def _price(self, endpoint: str, width: int, height: int) -> float | None:
        costs = self._settings.costs
        if endpoint in costs:
            return costs[endpoint]
        if "default" in costs:
            return costs["default"]
        return table_price(endpoint, width, height)

    async def _result(self, handle: RemoteHandle, status_body: dict[str, Any]) -> Finished:
        """GET the result. A failed request also ends COMPLETED: its error is in the status (`error`,
        `error_type`) and in the result's non-2xx answer — read both."""
        request_id = str(handle["request_id"])
        url = handle.get("response_url")
        if not isinstance(url, str):
            raise Permanent(f"not a fal poll handle: {sorted(handle)}")
        answer = await self._api(RequestKind.POLL, "GET", url, check=False)
        if not 200 <= answer.status < 300:
            raise self._http.error(answer)
        error = status_body.get("error")
        urls = image_urls(answer.body)
        if not urls:
            if isinstance(error, str) and error.strip():
                kind = status_body.get("error_type")
                if kind == "content_policy_violation":
                    raise Permanent(
                        f"fal: refused by the content policy (content_policy_violation): {error}",
                        status=answer.status,
                        request_id=answer.request_id or request_id,
                    )
                raise Permanent(
                    f"fal: the request failed ({kind or 'error'}): {error}",
                    status=answer.status,
                    request_id=answer.request_id or request_id,
                )
            raise Permanent(
                "fal: the request completed without an image",
                status=answer.status,
                request_id=answer.request_id or request_id,
            )
        body = answer.body if isinstance(answer.body, dict) else {}
        endpoint = str(handle.get("endpoint") or self._settings.model)
        first = (body.get("images") or [{}])[0]
        width, height = (first.get("width"), first.get("height")) if isinstance(first, dict) else (None, None)
        metadata: dict[str, Any] = {"endpoint": endpoint, "request_id": request_id}
        for key in ("seed", "has_nsfw_concepts", "timings"):
            if body.get(key) is not None:
                metadata[key] = body[key]
        credits = (
            self._price(endpoint, width, height)
            if isinstance(width, int) and isinstance(height, int)
            else self._price(endpoint, 1024, 1024)
        )
        return Finished(
            remote_id=request_id,
            urls=tuple(urls),
            credits_used=credits,
            http_status=answer.status,
            request_id=answer.request_id or request_id,
            metadata=metadata,
        )

    async def _api(
        self,
        kind: RequestKind,
        method: str,
        url: str,
        *,
        json: Any = None,
        check: bool = True,
        priority: float = 0.0,
    ) -> HttpAnswer:
        return await self._http.send(
            kind,
            method,
            url,
            json=json,
            headers={"Authorization": self._authorization, "Accept": "application/json"},
            check=check,
            priority=priority,
        )


def image_urls(body: Any) -> list[str]:
    """`images[].url` (text-to-image endpoints), else `image.url`; strings are accepted too."""
    if not isinstance(body, dict):
        return []
    items: list[Any] = list(body["images"]) if isinstance(body.get("images"), list) else []
    if isinstance(body.get("image"), dict | str):
        items.append(body["image"])
    found = [item.get("url") if isinstance(item, dict) else item for item in items]
    return [u.strip() for u in found if isinstance(u, str) and u.strip()]
