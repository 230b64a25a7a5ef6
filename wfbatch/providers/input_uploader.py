"""The shared way fal and Replicate send a job's pictures: an https:// URL as given, a small
picture inline as a data URI, a larger one uploaded once to the provider's own storage and its URL
reused until it nearly expires (`UploadMemo`, kept in the store by the engine)."""

from __future__ import annotations

from typing import Any, ClassVar

from wfbatch.core.models import InputImage, JobSpec
from wfbatch.providers.inputs import input_bytes
from wfbatch.providers.uploads import DATA_URI_MAX_BYTES, UploadLocks, UploadMemo, data_uri


class InputUploader:
    """A job's pictures as a provider's input fields: an https:// URL as given, a small picture
    inline as a data URI, a larger one uploaded once (`_upload`, the provider's own storage) and
    its URL reused until it nearly expires. A subclass names its fields and does the upload."""

    FIELDS: ClassVar[dict[str, str]]
    """The input field of an `image` and of a `mask`."""
    STRENGTH_FIELD: ClassVar[str]

    def __init__(self, memo: UploadMemo, locks: UploadLocks) -> None:
        self._memo = memo
        self._locks = locks

    async def input_fields(self, spec: JobSpec) -> dict[str, Any]:
        """The model-input fields carrying the job's pictures (and its strength)."""
        fields: dict[str, Any] = {}
        for item in spec.inputs:
            value = await self.value_of(item)
            if item.role == "images":
                fields.setdefault("image_urls", []).append(value)
            else:
                fields[self.FIELDS[item.role]] = value
        if spec.strength is not None:
            fields[self.STRENGTH_FIELD] = spec.strength
        return fields

    async def value_of(self, item: InputImage) -> str:
        if item.is_url:
            return item.location
        data = input_bytes(item)
        if len(data) <= DATA_URI_MAX_BYTES:
            return data_uri(item, data)
        async with self._locks.hold(item.sha256):
            known = await self._memo.recall(item.sha256)
            if known is not None:
                return known
            url, expires_at = await self._upload(item, data)
            await self._memo.remember(item.sha256, url, expires_at)
            return url

    async def _upload(self, item: InputImage, data: bytes) -> tuple[str, float]:
        """Upload the picture; its URL and when it expires."""
        raise NotImplementedError
