"""The store's memory of input pictures uploaded to a provider's storage, as a provider sees it
(`UploadMemo`): per provider and account, by sha256. Kept in SQLite, so a re-send after a crash
(or another run) reuses an upload that has not expired."""

from __future__ import annotations

import time

from wfbatch.providers.uploads import REUSE_MARGIN
from wfbatch.store import StoreApi


class StoreUploads:
    def __init__(self, store: StoreApi, provider: str, account: str) -> None:
        self._store = store
        self._provider = provider
        self._account = account

    async def recall(self, sha256: str) -> str | None:
        found = await self._store.cache.upload_of(self._provider, self._account, sha256)
        if found is None or found[1] <= time.time() + REUSE_MARGIN:
            return None
        return found[0]

    async def remember(self, sha256: str, url: str, expires_at: float) -> None:
        await self._store.cache.remember_upload(self._provider, self._account, sha256, url, expires_at)
