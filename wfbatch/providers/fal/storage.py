"""A job's pictures as fal inputs (providers.md §12.3): an https:// URL as given; a small picture
inline as a data URI (`DATA_URI_MAX_BYTES`); a larger one uploaded to fal's CDN once and its URL
reused (`UploadMemo`, kept in the store by the engine).

The upload is fal_client's REST flow (client): `POST {storage}/storage/auth/token?storage_type=
fal-cdn-v3` with the key → `{token, token_type, base_url, expires_at}`; then `POST
{base_url}/files/upload` with `Authorization: <token_type> <token>`, the content type and
`X-Fal-File-Name`, the raw bytes → `{"access_url"}`. fal keeps uploads like outputs, at least 7
days (§9): that is the expiry recorded (assumed).

Field names (model-specific; these are flux image-to-image's and the upscalers', §12.3):
`image_url`, `mask_url`, `image_urls`, and `strength`. An entry's `params` come last and may
rename or replace any of them."""

from __future__ import annotations

import time
from typing import Any

from wfbatch.core.models import InputImage, JobSpec
from wfbatch.providers.base import RequestKind
from wfbatch.providers.errors import Transient
from wfbatch.providers.http.layer import HttpLayer
from wfbatch.providers.inputs import file_name, input_bytes
from wfbatch.providers.uploads import DATA_URI_MAX_BYTES, UploadLocks, UploadMemo, data_uri

KEPT_SECONDS = 7 * 86400
_FIELDS = {"image": "image_url", "mask": "mask_url"}


class FalStorage:
    def __init__(
        self, http: HttpLayer, storage_url: str, authorization: str, memo: UploadMemo, locks: UploadLocks
    ) -> None:
        self._http = http
        self._storage = storage_url.rstrip("/")
        self._authorization = authorization
        self._memo = memo
        self._locks = locks

    async def input_fields(self, spec: JobSpec) -> dict[str, Any]:
        """The model-input fields carrying the job's pictures (and its strength)."""
        fields: dict[str, Any] = {}
        for item in spec.inputs:
            url = await self.url_of(item)
            if item.role == "images":
                fields.setdefault("image_urls", []).append(url)
            else:
                fields[_FIELDS[item.role]] = url
        if spec.strength is not None:
            fields["strength"] = spec.strength
        return fields

    async def url_of(self, item: InputImage) -> str:
        if item.is_url:
            return item.location
        data = input_bytes(item)
        if len(data) <= DATA_URI_MAX_BYTES:
            return data_uri(item, data)
        async with self._locks.hold(item.sha256):
            known = await self._memo.recall(item.sha256)
            if known is not None:
                return known
            url = await self._upload(item, data)
            await self._memo.remember(item.sha256, url, time.time() + KEPT_SECONDS)
            return url

    async def _upload(self, item: InputImage, data: bytes) -> str:
        token = await self._http.send(
            RequestKind.OTHER,
            "POST",
            f"{self._storage}/storage/auth/token",
            params={"storage_type": "fal-cdn-v3"},
            json={},
            headers={"Authorization": self._authorization, "Accept": "application/json"},
        )
        grant = token.json_object()
        value, kind, base = grant.get("token"), grant.get("token_type"), grant.get("base_url")
        if not all(isinstance(part, str) and part for part in (value, kind, base)):
            raise Transient("fal: the storage token answer lacks token, token_type or base_url")
        answer = await self._http.send(
            RequestKind.OTHER,
            "POST",
            f"{str(base).rstrip('/')}/files/upload",
            content=data,
            headers={
                "Authorization": f"{kind} {value}",
                "Content-Type": item.media_type or "image/png",
                "X-Fal-File-Name": file_name(item),
                "Accept": "application/json",
            },
        )
        url = answer.json_object().get("access_url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise Transient("fal: the upload answer has no access_url")
        return url
