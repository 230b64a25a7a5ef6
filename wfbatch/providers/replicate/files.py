"""A job's pictures as Replicate inputs (providers.md §12.4): a file input is a string, an
https:// URL as given, a data URI for a small picture (Replicate takes them under 1 MB; wfbatch
inlines up to `DATA_URI_MAX_BYTES`), else the URL of a file uploaded once through the files API
(`POST /v1/files`, multipart `content`, `filename`, `type`) and reused until it expires (~24 h,
the answer's `expires_at`; kept in the store by the engine).

Input names vary per model (read the version's `openapi_schema`): wfbatch sends `image`, `mask`
and `prompt_strength` (flux-dev's and SDXL's img2img names) and `image_urls` for reference
pictures; an entry's `params` come last and may rename or replace any of them."""

from __future__ import annotations

import time
from typing import ClassVar

from wfbatch.core.models import InputImage
from wfbatch.providers.base import RequestKind
from wfbatch.providers.errors import Transient
from wfbatch.providers.http.layer import FormValue, HttpLayer
from wfbatch.providers.input_uploader import InputUploader
from wfbatch.providers.inputs import file_name
from wfbatch.providers.replicate.request import parse_time
from wfbatch.providers.uploads import UploadLocks, UploadMemo

KEPT_SECONDS = 24 * 3600.0
"""Replicate's recorded lifetime of an upload (client), when the answer gives no `expires_at`."""


class ReplicateFiles(InputUploader):
    FIELDS: ClassVar[dict[str, str]] = {"image": "image", "mask": "mask"}
    STRENGTH_FIELD = "prompt_strength"

    def __init__(
        self, http: HttpLayer, base: str, authorization: str, memo: UploadMemo, locks: UploadLocks
    ) -> None:
        super().__init__(memo, locks)
        self._http = http
        self._base = base.rstrip("/")
        self._authorization = authorization

    async def _upload(self, item: InputImage, data: bytes) -> tuple[str, float]:
        name = file_name(item)
        form: dict[str, FormValue] = {
            "content": (name, data, item.media_type or "image/png"),
            "filename": name,
            "type": item.media_type or "image/png",
        }
        answer = await self._http.send(
            RequestKind.OTHER,
            "POST",
            f"{self._base}/files",
            form=form,
            headers={"Authorization": self._authorization, "Accept": "application/json"},
        )
        body = answer.json_object()
        urls = body.get("urls")
        url = urls.get("get") if isinstance(urls, dict) else None
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise Transient("replicate: the file upload's answer has no urls.get", status=answer.status)
        expires = parse_time(body.get("expires_at"))
        return url, expires if expires is not None else time.time() + KEPT_SECONDS
