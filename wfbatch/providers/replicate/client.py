"""Replicate predictions API (providers.md §3): create (`Prefer: wait=N` optional; 200/201/202),
poll `urls.get` until `succeeded` / `failed` / `canceled` / `aborted`, download each output URL at
once (Replicate deletes outputs after an hour: `data_removed`), `POST urls.cancel` on a hand cancel.

Errors are problem+json (`title`, `detail`, `status`): 402 pauses the provider for billing, 429
waits `retry-after`, else `ratelimit-reset`, else the "~30s" in `detail`; a `failed` prediction
(NSFW and the like) is final with Replicate's message.

Creates have no idempotency key: after a lost answer (or a crash mid-create) `reconcile` lists
recent predictions (following `next` verbatim, bounded pages) and adopts the one created since the
job started with exactly the input we would send; only when none matches is the job sent again.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import quote, urlsplit

from wfbatch.core.models import JobSpec
from wfbatch.providers.base import (
    Finished,
    Image,
    Pending,
    RemoteHandle,
    RequestKind,
    Submitted,
)
from wfbatch.providers.errors import OutOfCredits, Permanent, ProviderError, RateLimited, Transient
from wfbatch.providers.http import HttpAnswer
from wfbatch.providers.http import headers as hdr
from wfbatch.providers.http.classify import error_message
from wfbatch.providers.http.download import fetch_image
from wfbatch.providers.http.provider import HttpProvider, HttpStyle, ProviderConfigError
from wfbatch.providers.replicate import request
from wfbatch.providers.replicate.files import ReplicateFiles
from wfbatch.providers.replicate.headers import replicate_dialect
from wfbatch.providers.replicate.prices import table_price
from wfbatch.providers.replicate.rules import model_of
from wfbatch.providers.replicate.settings import ReplicateSettings

RUNNING = frozenset({"starting", "processing", "queued"})
CLOCK_SKEW = 2.0
"""Seconds a listed prediction's `created_at` may precede the job's start and still be its own
(the server's clock against ours)."""
_SECONDS_IN_DETAIL = re.compile(r"~?\s*(\d+(?:\.\d+)?)\s*s\b")


class ReplicateConfigError(ProviderConfigError):
    """The Replicate settings cannot work (no API key)."""


def problem_message(body: Any, status: int) -> str:
    """`title: detail` of a problem+json body, else whatever message it has."""
    if isinstance(body, dict):
        title, detail = body.get("title"), body.get("detail")
        parts = [p.strip() for p in (title, detail) if isinstance(p, str) and p.strip()]
        if parts:
            return ": ".join(dict.fromkeys(parts))[:500]
    return error_message(body) or f"HTTP {status}"


def classify(answer: HttpAnswer) -> ProviderError | None:
    message = problem_message(answer.body, answer.status)
    if answer.status == 402:
        return OutOfCredits(
            f"replicate: billing required, out of credit (402): {message}",
            status=402,
            request_id=answer.request_id,
        )
    if answer.status == 429:
        delay = hdr.retry_after(answer.headers, time.time())
        if delay is None:
            delay = replicate_dialect(answer.headers, 0.0).reset_at  # seconds from now (now = 0)
        if delay is None:
            detail = answer.body.get("detail") if isinstance(answer.body, dict) else None
            found = _SECONDS_IN_DETAIL.search(detail) if isinstance(detail, str) else None
            delay = float(found.group(1)) if found else None
        return RateLimited(
            f"replicate: rate limited: {message}", retry_after=delay, status=429, request_id=answer.request_id
        )
    if 400 <= answer.status < 500 and answer.status not in (401, 403, 408, 409, 425):
        return Permanent(f"replicate: {message}", status=answer.status, request_id=answer.request_id)
    return None


def output_urls(output: Any) -> list[str]:
    """A URL, a list of URLs (or of `{url}` objects)."""
    items = output if isinstance(output, list) else [output]
    found = [item.get("url") if isinstance(item, dict) else item for item in items]
    return [u.strip() for u in found if isinstance(u, str) and u.strip().startswith(("http://", "https://"))]


class ReplicateProvider(HttpProvider[ReplicateSettings]):
    name = "replicate"
    config_error = ReplicateConfigError
    style = HttpStyle(dialect=replicate_dialect)

    def read_error(self, answer: HttpAnswer) -> ProviderError | None:
        return classify(answer)

    # -- the protocol ------------------------------------------------------------------------

    async def submit(self, spec: JobSpec, idempotency_key: str) -> Submitted | Finished:
        model = model_of(spec.model, self._settings.model)
        url, body = request.create_target(model, self._base)
        body["input"] = request.model_input(spec, self._settings.model, self._settings.size_mode)
        if spec.inputs or spec.strength is not None:
            files = ReplicateFiles(
                self._http, self._base, self._authorization, self.upload_memo, self.upload_locks
            )
            # Params come last in the input and win: they may rename a picture's field.
            body["input"] = {**body["input"], **await files.input_fields(spec), **spec.params}
        headers = {} if self._settings.wait is None else {"Prefer": f"wait={self._settings.wait}"}
        answer = await self._api(RequestKind.START, "POST", url, json=body, headers=headers)
        prediction = answer.json_object()
        outcome = self._outcome(prediction, answer, model)
        if isinstance(outcome, Finished):
            return outcome
        return self._submitted(prediction, answer.status)

    async def poll(self, handle: RemoteHandle, *, priority: float = 0.0) -> Pending | Finished:
        url = handle.get("get")
        if not isinstance(url, str):
            raise Permanent(f"not a Replicate poll handle: {sorted(handle)}")
        answer = await self._api(RequestKind.POLL, "GET", url, priority=priority)
        return self._outcome(answer.json_object(), answer, str(handle.get("model") or self._settings.model))

    async def download(self, finished: Finished) -> list[Image]:
        if finished.images:
            return list(finished.images)
        hint = "Replicate deletes API predictions' outputs one hour after they finish"
        return [await fetch_image(self._http, url, gone_hint=hint) for url in finished.urls]

    async def cancel(self, handle: RemoteHandle) -> bool:
        url = handle.get("cancel")
        if not isinstance(url, str):
            return False
        answer = await self._http.send(
            RequestKind.OTHER, "POST", url, headers={"Authorization": self._authorization}, check=False
        )
        return 200 <= answer.status < 300

    async def reconcile(
        self, spec: JobSpec, idempotency_key: str, started_at: float | None
    ) -> Submitted | None:
        """Adopt the prediction a lost create made, if the recent list shows one (newest first)."""
        sent = request.model_input(spec, self._settings.model, self._settings.size_mode)
        since = None if started_at is None else started_at - CLOCK_SKEW
        origin = urlsplit(self._base)
        url: str | None = f"{self._base}/predictions"
        for _ in range(self._settings.reconcile_pages):
            if url is None:
                break
            answer = await self._api(RequestKind.OTHER, "GET", url)
            page = answer.json_object()
            listed = page.get("results")
            results: list[Any] = listed if isinstance(listed, list) else []
            for prediction in results:
                if request.matches(prediction, sent, since):
                    return self._submitted(prediction, answer.status)
            oldest = (
                request.parse_time(results[-1].get("created_at"))
                if results and isinstance(results[-1], dict)
                else None
            )
            if since is not None and oldest is not None and oldest < since:
                break  # newest first: the rest were created before the job started
            following = page.get("next")
            # `next` verbatim, but only on the API's own origin: the token goes with the request.
            same_origin = isinstance(following, str) and urlsplit(following)[:2] == origin[:2]
            url = following if same_origin and isinstance(following, str) else None
        return None

    async def estimate(self, spec: JobSpec) -> float | None:
        return self._price(model_of(spec.model, self._settings.model))

    # -- internals ---------------------------------------------------------------------------

    def _price(self, model: str) -> float | None:
        costs = self._settings.costs
        for key in (model, model.split(":")[0], "default"):
            if key in costs:
                return costs[key]
        return table_price(model)

    def _submitted(self, prediction: dict[str, Any], status: int | None) -> Submitted:
        prediction_id = prediction.get("id")
        if not isinstance(prediction_id, str) or not prediction_id:
            raise Transient("replicate: the prediction has no id", status=status)
        given = prediction.get("urls")
        urls: dict[str, Any] = given if isinstance(given, dict) else {}
        own = f"{self._base}/predictions/{quote(prediction_id, safe='')}"
        get, cancel = urls.get("get"), urls.get("cancel")
        handle: RemoteHandle = {
            "id": prediction_id,
            "get": get if isinstance(get, str) and get.startswith(("http://", "https://")) else own,
            "cancel": cancel
            if isinstance(cancel, str) and cancel.startswith(("http://", "https://"))
            else f"{own}/cancel",
        }
        if isinstance(prediction.get("model"), str):
            handle["model"] = prediction["model"]
        return Submitted(remote_id=prediction_id, handle=handle, http_status=status, request_id=prediction_id)

    def _outcome(self, prediction: dict[str, Any], answer: HttpAnswer, model: str) -> Pending | Finished:
        prediction_id = str(prediction.get("id") or "")
        rid = prediction_id or answer.request_id
        status = str(prediction.get("status") or "").strip().lower()
        if status in RUNNING or (not status and not prediction.get("completed_at")):
            return Pending(prediction_id, status or "unknown", answer.status, rid)
        if status == "failed":
            error = prediction.get("error")
            text = error.strip() if isinstance(error, str) and error.strip() else "no error message given"
            raise Permanent(f"replicate: the prediction failed: {text}", status=answer.status, request_id=rid)
        if status in ("canceled", "aborted"):
            why = "canceled" if status == "canceled" else "aborted (its deadline passed before it started)"
            raise Permanent(f"replicate: the prediction was {why}", status=answer.status, request_id=rid)
        urls = output_urls(prediction.get("output"))
        if not urls:
            if prediction.get("data_removed") is True:
                raise Permanent(
                    "replicate: the outputs were deleted (data_removed) before they were downloaded: "
                    "Replicate keeps API predictions' outputs for one hour",
                    status=answer.status,
                    request_id=rid,
                )
            if status == "succeeded" or prediction.get("completed_at"):
                raise Permanent(
                    f"replicate: the prediction ended ({status or 'no status'}) without an output URL",
                    status=answer.status,
                    request_id=rid,
                )
            # A status this client does not know and no sign of an end: keep polling (bounded).
            return Pending(prediction_id, status, answer.status, rid)
        given = prediction.get("metrics")
        metrics: dict[str, Any] = given if isinstance(given, dict) else {}
        metadata: dict[str, Any] = {"model": prediction.get("model") or model, "status": status}
        if metrics.get("predict_time") is not None:
            metadata["predict_time"] = metrics["predict_time"]
        return Finished(
            remote_id=prediction_id or None,
            urls=tuple(urls),
            credits_used=self._price(model) if model else None,
            http_status=answer.status,
            request_id=rid,
            metadata=metadata,
        )

    async def _api(
        self,
        kind: RequestKind,
        method: str,
        url: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        priority: float = 0.0,
    ) -> HttpAnswer:
        return await self._http.send(
            kind,
            method,
            url,
            json=json,
            headers={"Authorization": self._authorization, "Accept": "application/json", **(headers or {})},
            priority=priority,
        )
