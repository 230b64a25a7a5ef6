"""OpenAI's Batch API for images (providers.md §6): the input file (JSONL of `{custom_id, method,
url, body}`) uploaded with `POST /files` (multipart, purpose `batch`), the batch started with
`POST /batches`, found again by its `metadata` tag with `GET /batches` (creating is not idempotent,
§10), polled with `GET /batches/{id}`, its output and error files streamed line by line.

Output order is not input order: every line is mapped back by `custom_id`. A line answered with a
non-2xx carries OpenAI's error (a refusal fails the job, a 5xx is tried again); a line that never
ran (`response: null`, e.g. `batch_expired`) was not charged and goes back to the queue. A line
answered 2xx was made and charged even when no image can be read from it (`b64_json` not an image,
empty `data`): it comes back `paid`, with its price, so the charge is booked and the job fails
instead of being sent again.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from wfbatch.core.models import JobSpec
from wfbatch.providers.base import BatchLine, LineResult, RemoteBatchInfo, RequestKind
from wfbatch.providers.errors import Permanent, ProviderError, Transient
from wfbatch.providers.http import HttpLayer
from wfbatch.providers.http.classify import error_message
from wfbatch.providers.openai import request
from wfbatch.providers.openai.errors import classify_body
from wfbatch.providers.openai.settings import OpenAISettings

if TYPE_CHECKING:
    from wfbatch.providers.openai.client import OpenAIProvider

ENDPOINT = "/v1/images/generations"
COMPLETION_WINDOW = "24h"
TAG_KEY = "wfbatch_tag"
LIST_PAGE = 100
LIST_PAGES = 20
"""`find` reads at most this many pages of `GET /batches` (newest first): a batch created moments
before a crash is on the first page; the bound keeps a huge account from being walked forever."""


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def batch_info(body: Mapping[str, Any], request_id: str | None = None) -> RemoteBatchInfo:
    """OpenAI's `Batch` object; an empty `error_file_id` is absent (§6.2)."""
    counts = body.get("request_counts") if isinstance(body.get("request_counts"), dict) else {}
    errors_block = body.get("errors")
    errors: list[str] = []
    if isinstance(errors_block, dict) and isinstance(errors_block.get("data"), list):
        for item in errors_block["data"][:20]:
            if isinstance(item, dict):
                line = item.get("line")
                where = f"line {line}: " if isinstance(line, int) else ""
                errors.append(f"{where}{item.get('code') or 'error'}: {item.get('message') or ''}".strip())
    metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}

    def count(key: str) -> int:
        value = counts.get(key) if isinstance(counts, dict) else None
        return value if isinstance(value, int) and value >= 0 else 0

    remote_id = _text(body.get("id"))
    if remote_id is None:
        raise Transient("openai: a batch object without an id", request_id=request_id)
    return RemoteBatchInfo(
        remote_id=remote_id,
        status=_text(body.get("status")) or "unknown",
        total=count("total"),
        completed=count("completed"),
        failed=count("failed"),
        output_file_id=_text(body.get("output_file_id")),
        error_file_id=_text(body.get("error_file_id")),
        errors=tuple(errors),
        tag=_text(metadata.get(TAG_KEY)) if isinstance(metadata, dict) else None,
        request_id=request_id,
    )


class OpenAIBatchApi:
    """The Batch API of one OpenAI provider (same key, base URL, gate and HTTP layer)."""

    def __init__(
        self, owner: OpenAIProvider, http: HttpLayer, settings: OpenAISettings, authorization: str
    ) -> None:
        self._owner = owner
        self._http = http
        self._settings = settings
        self._base = settings.base_url.rstrip("/")
        self._headers = {"Authorization": authorization, "Accept": "application/json"}
        self.max_lines = settings.batch_max_lines
        self.max_file_bytes = settings.batch_max_file_bytes

    def line(self, spec: JobSpec, custom_id: str) -> BatchLine:
        model = request.model_of(spec, self._settings.model)
        refused = request.problems(spec, model)
        if refused:
            raise Permanent(f"openai: {'; '.join(refused)}")
        return BatchLine(custom_id, request.generation_body(spec, model))

    def encode(self, lines: Sequence[BatchLine]) -> bytes:
        return b"".join(
            json.dumps(
                {"custom_id": line.custom_id, "method": "POST", "url": ENDPOINT, "body": line.body},
                ensure_ascii=False,
                separators=(",", ":"),
            ).encode()
            + b"\n"
            for line in lines
        )

    async def upload(self, tag: str, content: bytes) -> str:
        answer = await self._http.send(
            RequestKind.OTHER,
            "POST",
            f"{self._base}/files",
            headers=self._headers,
            form={"purpose": "batch", "file": (f"{tag}.jsonl", content, "application/jsonl")},
        )
        file_id = _text(answer.json_object().get("id"))
        if file_id is None:
            raise Transient("openai: the upload's answer has no file id", request_id=answer.request_id)
        return file_id

    async def find_file(self, tag: str) -> str | None:
        after: str | None = None
        for _ in range(LIST_PAGES):
            url = f"{self._base}/files?purpose=batch&limit={LIST_PAGE}" + (f"&after={after}" if after else "")
            answer = await self._http.send(RequestKind.POLL, "GET", url, headers=self._headers)
            body = answer.json_object()
            found = body.get("data")
            data: list[Any] = found if isinstance(found, list) else []
            for item in data:
                if isinstance(item, dict) and item.get("filename") == f"{tag}.jsonl":
                    return _text(item.get("id"))
            last = data[-1] if data else None
            after = _text(last.get("id")) if isinstance(last, dict) else None
            if not body.get("has_more") or after is None:
                return None
        return None

    async def create(self, file_id: str, tag: str) -> RemoteBatchInfo:
        answer = await self._http.send(
            RequestKind.START,
            "POST",
            f"{self._base}/batches",
            headers=self._headers,
            json={
                "input_file_id": file_id,
                "endpoint": ENDPOINT,
                "completion_window": COMPLETION_WINDOW,
                "metadata": {TAG_KEY: tag},
            },
        )
        return batch_info(answer.json_object(), answer.request_id)

    async def find(self, tag: str) -> RemoteBatchInfo | None:
        after: str | None = None
        for _ in range(LIST_PAGES):
            url = f"{self._base}/batches?limit={LIST_PAGE}" + (f"&after={after}" if after else "")
            answer = await self._http.send(RequestKind.POLL, "GET", url, headers=self._headers)
            body = answer.json_object()
            found = body.get("data")
            data: list[Any] = found if isinstance(found, list) else []
            for item in data:
                if isinstance(item, dict):
                    info = batch_info(item, answer.request_id)
                    if info.tag == tag:
                        return info
            if not body.get("has_more") or not data:
                return None
            last = data[-1]
            after = _text(last.get("id")) if isinstance(last, dict) else None
            if after is None:
                return None
        return None

    async def get(self, remote_id: str) -> RemoteBatchInfo:
        answer = await self._http.send(
            RequestKind.POLL, "GET", f"{self._base}/batches/{remote_id}", headers=self._headers
        )
        return batch_info(answer.json_object(), answer.request_id)

    async def cancel(self, remote_id: str) -> RemoteBatchInfo:
        answer = await self._http.send(
            RequestKind.OTHER, "POST", f"{self._base}/batches/{remote_id}/cancel", headers=self._headers
        )
        return batch_info(answer.json_object(), answer.request_id)

    async def results(self, file_id: str, specs: Mapping[str, JobSpec]) -> AsyncIterator[LineResult]:
        lines = self._http.stream_lines(
            RequestKind.POLL,
            f"{self._base}/files/{file_id}/content",
            headers={"Authorization": self._headers["Authorization"]},
            max_bytes=self._settings.batch_output_max_bytes,
            deadline=self._settings.batch_download_deadline,
        )
        async for raw in lines:
            result = self._result(raw, specs)
            if result is not None:
                yield result

    def price(self, spec: JobSpec) -> float | None:
        model = request.model_of(spec, self._settings.model)
        price = self._owner.price(model, spec.params.get("quality"), f"{spec.width}x{spec.height}")
        return None if price is None else price * self._settings.batch_discount

    # -- one line ----------------------------------------------------------------------------

    def _result(self, raw: bytes, specs: Mapping[str, JobSpec]) -> LineResult | None:
        """One output/error line; None for a line that is not ours or not readable (its job stays
        in the batch and is sent again when the batch is done with)."""
        try:
            line = self._http.scrubber.json(json.loads(raw))
        except (ValueError, RecursionError):
            return None
        if not isinstance(line, dict):
            return None
        custom_id = _text(line.get("custom_id"))
        if custom_id is None or custom_id not in specs:
            return None
        spec = specs[custom_id]
        response = line.get("response")
        if isinstance(response, dict):
            status = response.get("status_code") if isinstance(response.get("status_code"), int) else None
            request_id = _text(response.get("request_id"))
            body = response.get("body")
            if status is not None and 200 <= status < 300:
                try:
                    if not isinstance(body, dict):
                        raise Transient(
                            "openai: the answer has no body", status=status, request_id=request_id
                        )
                    finished = self._owner.finished(
                        spec,
                        request.model_of(spec, self._settings.model),
                        body,
                        status,
                        request_id,
                        discount=self._settings.batch_discount,
                    )
                except ProviderError as error:
                    # Answered 2xx: the image was made and is charged, whatever the body says.
                    why = f"{error.message} (the line was answered {status}: made and charged)"
                    unreadable = Permanent(why, status=status, request_id=request_id)
                    return LineResult(custom_id, error=unreadable, paid=True, credits_used=self.price(spec))
                return LineResult(custom_id, finished=finished)
            message = f"openai: {error_message(body) or f'HTTP {status}'}"
            refusal = classify_body(body, status, request_id) or (
                # The server failed the line (nothing made, nothing charged): worth another try.
                Transient(message, status=status, request_id=request_id)
                if status is None or status >= 500
                else Permanent(message, status=status, request_id=request_id)
            )
            return LineResult(custom_id, error=refusal)
        failure = line.get("error") if isinstance(line.get("error"), dict) else {}
        code = _text(failure.get("code")) if isinstance(failure, dict) else None
        message = (_text(failure.get("message")) if isinstance(failure, dict) else None) or "not run"
        return LineResult(
            custom_id,
            error=Transient(f"openai batch: {code or 'error'}: {message}"),
            never_ran=True,
        )
