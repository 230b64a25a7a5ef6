"""Stability AI v2beta (providers.md §4, §12.2): one synchronous multipart `POST
/v2beta/stable-image/generate/{ultra|core|sd3}` per job, `accept: image/*`; the answer's body is the
image, so `submit` returns `Finished` with its bytes (the engine writes them to cache/ first). A job
with an input picture goes to image-to-image (`generate/ultra|sd3` with `image` and `strength`), with
a mask to `edit/inpaint` (`image`, `mask`), or, as an upscale, to `upscale/fast|conservative`
(synchronous too) or `upscale/creative`, which answers an id: `poll` fetches
`GET /v2beta/results/{id}` (202 running, 200 the image).

Outcomes, by the error's `name` (never its text):
- `content_moderation` (403) — refused and not charged: final for the prompt;
- `payment_required` (402, or 403 in one client's captures) — pause the provider for credit;
- `finish-reason: CONTENT_FILTERED` on a 200 — a blurred image, charged: `PaidRejection`, which
  the engine keeps in rejected/ before failing the job;
- 429 — Stability documents a lockout (60 s) and sends no `Retry-After`: nothing is sent until the
  lockout has passed (`lockout_seconds`), here and, through RateLimited, in the engine's limiter.

Money: no cost in the answer; the charge booked is `costs` or the default table for the model.
`GET /v1/user/balance` gives the credits left.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any

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
from wfbatch.providers.errors import (
    OutOfCredits,
    PaidRejection,
    Permanent,
    ProviderError,
    RateLimited,
    Transient,
)
from wfbatch.providers.http import HttpAnswer
from wfbatch.providers.http import headers as hdr
from wfbatch.providers.http.classify import error_message
from wfbatch.providers.http.layer import FormValue
from wfbatch.providers.http.provider import HttpProvider, ProviderConfigError
from wfbatch.providers.inputs import file_name, input_bytes
from wfbatch.providers.media import is_whole_image, sniff_image
from wfbatch.providers.stability import request
from wfbatch.providers.stability.prices import table_credits
from wfbatch.providers.stability.settings import StabilitySettings

FILTERED = "CONTENT_FILTERED"


class StabilityConfigError(ProviderConfigError):
    """The Stability settings cannot work (no API key)."""


def error_name(body: Any) -> str | None:
    name = body.get("name") if isinstance(body, dict) else None
    return name if isinstance(name, str) else None


def stability_message(answer: HttpAnswer) -> str:
    """`errors[]` joined (Stability's documented envelope), else whatever the body says."""
    body = answer.body
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list):
        texts = [str(item) for item in errors if isinstance(item, str | int | float)]
        if texts:
            return "; ".join(texts)[:500]
    return error_message(body) or f"HTTP {answer.status}"


class StabilityProvider(HttpProvider[StabilitySettings]):
    """No remote cancel (a request is the whole job); a balance from `/v1/user/balance`."""

    name = "stability"
    config_error = StabilityConfigError

    def __init__(
        self,
        settings: StabilitySettings,
        gate: RequestGate,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        monotonic: Any = time.monotonic,
    ) -> None:
        super().__init__(settings, gate, transport=transport)
        self._monotonic = monotonic
        self._locked_until = 0.0

    async def submit(self, spec: JobSpec, idempotency_key: str) -> Submitted | Finished:
        model = request.model_of(spec, self._settings.model)
        refused = request.problems(spec, model)
        if refused:
            raise Permanent(f"stability: {'; '.join(refused)}")
        form: dict[str, FormValue] = dict(request.form_fields(spec, model))
        image = spec.input_of("image")
        if image is not None:
            form["image"] = (file_name(image), input_bytes(image), image.media_type or "image/png")
        mask = spec.input_of("mask")
        if mask is not None and request.is_inpaint(spec):
            form["mask"] = (file_name(mask), input_bytes(mask), mask.media_type or "image/png")
        self._obey_lockout()
        path = request.path_of(spec, model)
        asynchronous = path == "upscale/creative"
        answer = await self._http.send(
            RequestKind.START,
            "POST",
            f"{self._base}/v2beta/stable-image/{path}",
            form=form,
            headers={
                "Authorization": self._authorization,
                "Accept": "application/json" if asynchronous else "image/*",
            },
            decode=asynchronous,
        )
        if asynchronous:
            # Creative upscale answers `{"id"}` and is fetched from /v2beta/results/{id} (§12.2).
            remote_id = answer.json_object().get("id")
            if not isinstance(remote_id, str) or not remote_id:
                raise Transient("stability: the creative upscale's answer has no id", status=answer.status)
            handle = {"id": remote_id, "model": model, "price": request.price_key(spec, model)}
            return Submitted(remote_id, handle, answer.status, answer.request_id)
        return self._finished(spec, model, answer)

    async def poll(self, handle: RemoteHandle, *, priority: float = 0.0) -> Pending | Finished:
        """A creative upscale's result: `202` still running, `200` the image (§12.2)."""
        remote_id = handle.get("id")
        if not isinstance(remote_id, str):
            raise Permanent("stability: only a creative upscale has anything to poll")
        self._obey_lockout()
        answer = await self._http.send(
            RequestKind.POLL,
            "GET",
            f"{self._base}/v2beta/results/{remote_id}",
            headers={"Authorization": self._authorization, "Accept": "image/*"},
            decode=False,
            priority=priority,
        )
        if answer.status == 202:
            return Pending(remote_id, "IN_PROGRESS", answer.status, answer.request_id)
        price = handle.get("price")
        credits = self._price(price) if isinstance(price, str) else None
        return self._finished_image(answer, str(handle.get("model") or ""), {}, credits, remote_id)

    async def download(self, finished: Finished) -> list[Image]:
        if finished.images:
            return list(finished.images)
        raise Transient("the Stability answer's image was not kept: generate again")

    async def balance(self) -> float | None:
        self._obey_lockout()
        answer = await self._http.send(
            RequestKind.OTHER,
            "GET",
            f"{self._base}/v1/user/balance",
            headers={"Authorization": self._authorization, "Accept": "application/json"},
        )
        credits = answer.json_object().get("credits")
        if isinstance(credits, int | float) and not isinstance(credits, bool):
            return float(credits)
        return None

    async def estimate(self, spec: JobSpec) -> float | None:
        return self._price(request.price_key(spec, request.model_of(spec, self._settings.model)))

    # -- internals ---------------------------------------------------------------------------

    def _price(self, model: str) -> float | None:
        costs = self._settings.costs
        if model in costs:
            return costs[model]
        if "default" in costs:
            return costs["default"]
        return table_credits(model)

    def _obey_lockout(self) -> None:
        """Nothing goes out during Stability's lockout: another job's request would only extend it."""
        left = self._locked_until - self._monotonic()
        if left > 0:
            raise RateLimited(f"stability: locked out after a 429; {left:.0f} s left", retry_after=left)

    def read_error(self, answer: HttpAnswer) -> ProviderError | None:
        name = error_name(answer.body)
        message = stability_message(answer)
        status, request_id = answer.status, answer.request_id
        if name == "content_moderation":
            return Permanent(
                f"stability: refused by content moderation (not charged): {message}",
                status=status,
                request_id=request_id,
            )
        if name == "payment_required" or answer.status == 402:
            return OutOfCredits(
                f"stability: out of credits ({name or answer.status}): {message}",
                status=status,
                request_id=request_id,
            )
        if answer.status == 429:
            given = hdr.retry_after(answer.headers, time.time())
            wait = given if given is not None else self._settings.lockout_seconds
            self._locked_until = max(self._locked_until, self._monotonic() + wait)
            return RateLimited(
                f"stability: rate limited ({message}); nothing is sent for {wait:g} s",
                retry_after=wait,
                status=status,
                request_id=request_id,
            )
        if answer.status in (400, 413, 422):
            return Permanent(
                f"stability: refused ({name or answer.status}): {message}",
                status=status,
                request_id=request_id,
            )
        return None

    def _finished(self, spec: JobSpec, model: str, answer: HttpAnswer) -> Finished:
        form = request.form_fields(spec, model)
        asked = {
            "model": model if request.takes_model(spec) else None,
            "endpoint": request.path_of(spec, model),
            "aspect_ratio": form.get("aspect_ratio"),
            "output_format": form["output_format"],
            "strength": form.get("strength"),
        }
        credits = self._price(request.price_key(spec, model))
        return self._finished_image(answer, model, asked, credits, None)

    def _finished_image(
        self,
        answer: HttpAnswer,
        model: str,
        asked: dict[str, Any],
        credits: float | None,
        remote_id: str | None,
    ) -> Finished:
        data, reason, seed = self._image_of(answer)
        media_type = sniff_image(data)
        if media_type is None or not is_whole_image(data):
            raise Transient(
                "stability: the answer is not a whole PNG, JPEG or WebP image",
                status=answer.status,
                request_id=answer.request_id,
            )
        metadata: dict[str, Any] = {**asked, "finish_reason": reason, "seed": seed}
        metadata = {k: v for k, v in metadata.items() if v is not None}
        image = Image(data=data, media_type=media_type, metadata=metadata)
        if reason == FILTERED:
            raise PaidRejection(
                "stability: the image was blurred by the content filter (finish-reason CONTENT_FILTERED);"
                " it was charged",
                image=image,
                credits_used=credits,
                status=answer.status,
                request_id=answer.request_id,
            )
        return Finished(
            remote_id=remote_id,
            images=(image,),
            credits_used=credits,
            http_status=answer.status,
            request_id=answer.request_id,
            metadata=metadata,
        )

    def _image_of(self, answer: HttpAnswer) -> tuple[bytes, str | None, str | None]:
        """(bytes, finish reason, seed): raw bytes with headers (`accept: image/*`), or — from a
        server that answers JSON anyway — `{"image": base64, "finish_reason", "seed"}`."""
        content_type = answer.headers.get("content-type", "")
        reason = answer.headers.get("finish-reason")
        seed = answer.headers.get("seed")
        if not content_type.startswith("application/json"):
            return answer.content, reason, seed
        try:
            body = self._http.scrubber.json(json.loads(answer.content))
        except (ValueError, RecursionError):
            body = None
        encoded = body.get("image") if isinstance(body, dict) else None
        if not isinstance(encoded, str):
            raise Transient(
                "stability: a JSON answer without an image",
                status=answer.status,
                request_id=answer.request_id,
            )
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise Transient(
                "stability: the answer's image is not valid base64",
                status=answer.status,
                request_id=answer.request_id,
            ) from exc
        assert isinstance(body, dict)
        json_reason = body.get("finish_reason")
        json_seed = body.get("seed")
        return (
            data,
            json_reason if isinstance(json_reason, str) else reason,
            str(json_seed) if json_seed is not None else seed,
        )
