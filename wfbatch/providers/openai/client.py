"""OpenAI Images (providers.md §5): one synchronous `POST /images/generations` per job (or, for a
job with pictures in or a final refined from its draft, a multipart `POST /images/edits`, §12.1);
the answer carries the image (base64), so `submit` returns `Finished` with its bytes.

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

import httpx

from wfbatch.core.models import JobSpec
from wfbatch.providers.base import (
    Finished,
    Image,
    LikelyCost,
    Pending,
    RemoteHandle,
    RequestGate,
    RequestKind,
    Submitted,
)
from wfbatch.providers.errors import Permanent, ProviderError, Transient
from wfbatch.providers.http import HttpAnswer
from wfbatch.providers.http.layer import FormValue
from wfbatch.providers.http.provider import HttpProvider, HttpStyle, ProviderConfigError
from wfbatch.providers.inputs import file_name, input_bytes
from wfbatch.providers.media import sniff_image
from wfbatch.providers.openai import edits, request
from wfbatch.providers.openai.batch import OpenAIBatchApi
from wfbatch.providers.openai.errors import classify_body
from wfbatch.providers.openai.headers import openai_dialect
from wfbatch.providers.openai.prices import auto_quality_range, table_price
from wfbatch.providers.openai.settings import OpenAISettings


def classify(answer: HttpAnswer) -> ProviderError | None:
    """OpenAI's error envelope, by `code` then `type`; None leaves the status mapping to decide."""
    return classify_body(answer.body, answer.status, answer.request_id)


def batch_mode(spec: JobSpec, settings: OpenAISettings) -> bool:
    """Whether `spec` goes through the Batch API: its own `mode`, else the section's."""
    return (spec.mode or settings.mode) == "batch"


class OpenAIConfigError(ProviderConfigError):
    """The OpenAI settings cannot work (no API key)."""


class OpenAIProvider(HttpProvider[OpenAISettings]):
    """No remote cancel (a request is the whole job), no balance (only an admin key can read costs)."""

    name = "openai"
    config_error = OpenAIConfigError
    style = HttpStyle(dialect=openai_dialect)

    def read_error(self, answer: HttpAnswer) -> ProviderError | None:
        return classify(answer)

    def __init__(
        self,
        settings: OpenAISettings,
        gate: RequestGate,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(settings, gate, transport=transport)
        self._batches: OpenAIBatchApi | None = None

    async def submit(self, spec: JobSpec, idempotency_key: str) -> Submitted | Finished:
        model = request.model_of(spec, self._settings.model)
        refused = request.problems(spec, model)
        if refused:
            raise Permanent(f"openai: {'; '.join(refused)}")
        headers = {"Authorization": self._authorization, "Accept": "application/json"}
        if edits.is_edit(spec):
            answer = await self._http.send(
                RequestKind.START, "POST", f"{self._base}/images/edits", form=self._edit_form(spec, model),
                headers=headers,
            )
        else:
            answer = await self._http.send(
                RequestKind.START,
                "POST",
                f"{self._base}/images/generations",
                json=request.generation_body(spec, model),
                headers=headers,
            )
        return self.finished(spec, model, answer.json_object(), answer.status, answer.request_id)

    def _edit_form(self, spec: JobSpec, model: str) -> list[tuple[str, FormValue]]:
        """The multipart edit (`edits`): its text fields, then each picture's bytes (checked
        against the hash taken when the prompt file was accepted)."""
        body = request.generation_body(spec, model)
        form: list[tuple[str, FormValue]] = list(edits.edit_fields(body, spec))
        pictures = [item for item in spec.inputs if item.role in ("image", "images")]
        name = "image" if len(pictures) == 1 else "image[]"
        for item in pictures:
            form.append((name, (file_name(item), input_bytes(item), item.media_type or "image/png")))
        mask = spec.input_of("mask")
        if mask is not None:
            form.append(("mask", (file_name(mask), input_bytes(mask), "image/png")))
        return form

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
        price = self._price(model, spec.params.get("quality"), f"{spec.width}x{spec.height}")
        if price is not None and batch_mode(spec, self._settings):
            return price * self._settings.batch_discount
        return price

    def likely_cost(self, spec: JobSpec) -> LikelyCost | None:
        """`auto` quality (the default) is priced at `high` for budgets, and mostly charged at
        `medium`: plan shows both ends. None with a quality given or `costs` configured."""
        quality = spec.params.get("quality")
        model = request.model_of(spec, self._settings.model)
        costs = self._settings.costs
        if quality not in (None, "auto") or model in costs or "default" in costs:
            return None
        found = auto_quality_range(model, f"{spec.width}x{spec.height}")
        if found is None:
            return None
        scale = self._settings.batch_discount if batch_mode(spec, self._settings) else 1.0
        return LikelyCost(found[0] * scale, found[1] * scale, "quality auto: the server picks")

    def remote_batches(self) -> OpenAIBatchApi:
        """The Batch API on the same HTTP layer (its requests share the gate and the scrubbing)."""
        if self._batches is None:
            self._batches = OpenAIBatchApi(self, self._http, self._settings, self._authorization)
        return self._batches

    def price(self, model: str, quality: Any, size: str) -> float | None:
        """US dollars for one direct image: `costs` (by model, else `default`), else the table."""
        return self._price(model, quality, size)

    # -- internals ---------------------------------------------------------------------------

    def _price(self, model: str, quality: Any, size: str) -> float | None:
        costs = self._settings.costs
        if model in costs:
            return costs[model]
        if "default" in costs:
            return costs["default"]
        return table_price(model, quality if isinstance(quality, str) else None, size)

    def finished(
        self,
        spec: JobSpec,
        model: str,
        body: dict[str, Any],
        status: int | None,
        request_id: str | None,
        *,
        discount: float = 1.0,
    ) -> Finished:
        """An `ImagesResponse` (a direct answer, or a batch output line's `response.body`) as a
        finished execution; `discount` scales the price (a batch line costs half)."""
        data = body.get("data")
        item = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else None
        encoded = item.get("b64_json") if item else None
        if not isinstance(encoded, str) or not encoded:
            raise Transient(
                "openai: the answer carries no image (data[0].b64_json)",
                status=status,
                request_id=request_id,
            )
        try:
            image = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise Transient(
                "openai: the answer's image is not valid base64",
                status=status,
                request_id=request_id,
            ) from exc
        media_type = sniff_image(image)
        if media_type is None:
            raise Transient(
                "openai: the answer's image is not a PNG, JPEG or WebP",
                status=status,
                request_id=request_id,
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
        price = self._price(model, quality, str(size))
        return Finished(
            remote_id=None,
            images=(Image(data=image, media_type=media_type, metadata=metadata),),
            credits_used=None if price is None else price * discount,
            http_status=status,
            request_id=request_id,
            metadata=metadata,
        )
