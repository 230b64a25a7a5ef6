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
from typing import ClassVar

from wfbatch.core.models import InputImage
from wfbatch.providers.base import RequestKind
from wfbatch.providers.errors import Transient
from wfbatch.providers.http.layer import HttpLayer
from wfbatch.providers.input_uploader import InputUploader
from wfbatch.providers.inputs import file_name
from wfbatch.providers.uploads import UploadLocks, UploadMemo

KEPT_SECONDS = 7 * 86400


class FalStorage(InputUploader):
    FIELDS: ClassVar[dict[str, str]] = {"image": "image_url", "mask": "mask_url"}
    STRENGTH_FIELD = "strength"

    def __init__(
        self, http: HttpLayer, storage_url: str, authorization: str, memo: UploadMemo, locks: UploadLocks
    ) -> None:
        super().__init__(memo, locks)
        self._http = http
        self._storage = storage_url.rstrip("/")
        self._authorization = authorization

    async def _upload(self, item: InputImage, data: bytes) -> tuple[str, float]:
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
        return url, time.time() + KEPT_SECONDS
