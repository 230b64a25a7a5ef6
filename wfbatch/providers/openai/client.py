"""OpenAI Images (providers.md §5): one synchronous `POST /images/generations` per job; the answer
carries the image (base64), so `submit` returns `Finished` with its bytes.

Errors are read from the envelope's `code`, then `type`, never from the message (§5.3): a safety
refusal is final for the prompt; `insufficient_quota` (429) and `billing_hard_limit_reached` (400)
pause the provider; `rate_limit_exceeded` backs off by `retry-after-ms` / `retry-after`; the shared
layer handles statuses, `x-should-retry`, caps, the deadline and secret scrubbing.

Money: no price in the answer. The charge booked is the price table's (or `costs`) for the model,
quality and size the answer reports; `usage` (tokens) is kept in the image's metadata.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import urlsplit

import httpx

from wfbatch.core.models import JobSpec
from wfbatch.providers.base import (
    Finished,
    Image,
    Pending,
    ProviderDefaults,
    RemoteHandle,
    RequestGate,
    RequestKind,
    Submitted,
)
from wfbatch.providers.errors import OutOfCredits, Permanent, ProviderError, Transient
from wfbatch.providers.http import HttpAnswer, HttpLayer, HttpLimits
from wfbatch.providers.http.classify import error_code, error_message
from wfbatch.providers.http.headers import openai_dialect
from wfbatch.providers.media import sniff_image
from wfbatch.providers.openai import request
from wfbatch.providers.openai.prices import table_price
from wfbatch.settings import OpenAISettings

KEY_SETTING = "WFBATCH_OPENAI__API_KEY"
_SAFETY_CODES = frozenset({"moderation_blocked", "content_policy_violation"})
_QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})


class OpenAIConfigError(ValueError):
    """The OpenAI settings cannot work (no API key)."""


def classify(answer: HttpAnswer) -> ProviderError | None:
    """OpenAI's error envelope, by `code` then `type`; None leaves the status mapping to decide."""
    code, kind = error_code(answer.body)
    message = error_message(answer.body) or f"HTTP {answer.status}"
    if code in _SAFETY_CODES or kind == "image_generation_user_error":
        return Permanent(
            f"openai: refused by the safety system ({code or kind}): {message}",
            status=answer.status,
            request_id=answer.request_id,
        )
    if code in _QUOTA_CODES or kind == "insufficient_quota":
        return OutOfCredits(
            f"openai: out of quota ({code or kind}): {message}",
            status=answer.status,
            request_id=answer.request_id,
        )
    return None


class OpenAIProvider(ProviderDefaults):
    """No remote cancel (a request is the whole job), no balance (only an admin key can read costs)."""

    name = "openai"

    def __init__(
        self,
        settings: OpenAISettings,
        gate: RequestGate,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        problems = settings.configuration_problems()
        if problems or settings.api_key is None:
            raise OpenAIConfigError(problems[0] if problems else "OpenAI is not configured")
        self._settings = settings
        self._base = settings.base_url.rstrip("/")
        self._authorization = f"Bearer {settings.api_key.get_secret_value()}"
        self._http = HttpLayer(
            self.name,
            gate,
            HttpLimits.of(settings),
            secrets=[settings.api_key.get_secret_value()],
            key_setting=KEY_SETTING,
            classify=classify,
            dialect=openai_dialect,
            transport=transport,
        )
        self.label = f"openai ({settings.model} at {urlsplit(self._base).netloc or self._base})"

    def __repr__(self) -> str:
        return f"OpenAIProvider(model={self._settings.model!r}, base_url={self._base!r})"

    async def submit(self, spec: JobSpec, idempotency_key: str) -> Submitted | Finished:
        model = request.model_of(spec, self._settings.model)
        refused = request.problems(spec, model)
        if refused:
            raise Permanent(f"openai: {'; '.join(refused)}")
        answer = await self._http.send(
            RequestKind.START,
            "POST",
            f"{self._base}/images/generations",
            json=request.generation_body(spec, model),
            headers={"Authorization": self._authorization, "Accept": "application/json"},
        )
        return self._finished(spec, model, answer)

    async def poll(self, handle: RemoteHandle, *, priority: float = 0.0) -> Pending | Finished:
        raise Permanent("openai images are synchronous: there is nothing to poll")

    async def download(self, finished: Finished) -> list[Image]:
        if finished.images:
            return list(finished.images)
        # The bytes are not kept across a restart (base64 lives only in the answer): ask again.
        raise Transient("the OpenAI answer's image was not kept: generate again")

    async def estimate(self, spec: JobSpec) -> float | None:
        """US dollars for one image: `costs` (by model, else `default`), else the price table."""
        model = request.model_of(spec, self._settings.model)
        return self._price(model, spec.params.get("quality"), f"{spec.width}x{spec.height}")

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- internals ---------------------------------------------------------------------------

    def _price(self, model: str, quality: Any, size: str) -> float | None:
        costs = self._settings.costs
        if model in costs:
            return costs[model]
        if "default" in costs:
            return costs["default"]
        return table_price(model, quality if isinstance(quality, str) else None, size)

    def _finished(self, spec: JobSpec, model: str, answer: HttpAnswer) -> Finished:
        body = answer.json_object()
        data = body.get("data")
        item = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else None
        encoded = item.get("b64_json") if item else None
        if not isinstance(encoded, str) or not encoded:
            raise Transient(
                "openai: the answer carries no image (data[0].b64_json)",
                status=answer.status,
                request_id=answer.request_id,
            )
        try:
            image = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise Transient(
                "openai: the answer's image is not valid base64",
                status=answer.status,
                request_id=answer.request_id,
            ) from exc
        media_type = sniff_image(image)
        if media_type is None:
            raise Transient(
                "openai: the answer's image is not a PNG, JPEG or WebP",
                status=answer.status,
                request_id=answer.request_id,
            )
        # The answer says which quality and size it made (a request's `auto` is resolved there).
        size = body.get("size") if isinstance(body.get("size"), str) else f"{spec.width}x{spec.height}"
        quality = body.get("quality") if isinstance(body.get("quality"), str) else spec.params.get("quality")
        metadata: dict[str, Any] = {
            "model": model,
            "size": size,
            "quality": quality,
            "usage": body.get("usage"),
            "not_sent": request.ignored_fields(spec),
        }
        for key in ("output_format", "background"):
            if isinstance(body.get(key), str):
                metadata[key] = body[key]
        if isinstance(item, dict) and isinstance(item.get("revised_prompt"), str):
            metadata["revised_prompt"] = item["revised_prompt"]
        metadata = {k: v for k, v in metadata.items() if v is not None}
        return Finished(
            remote_id=None,
            images=(Image(data=image, media_type=media_type, metadata=metadata),),
            credits_used=self._price(model, quality, str(size)),
            http_status=answer.status,
            request_id=answer.request_id,
            metadata=metadata,
        )
