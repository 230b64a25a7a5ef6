"""Where a provider remembers the pictures it uploaded to its own storage (fal's CDN, Replicate's
files API): by the bytes' sha256, with the URL and when it expires. The engine hands each provider
one kept in the store (`keep_uploads_in`), so an input used by 500 entries is uploaded once, and a
re-send after a crash reuses it; without one (a CLI probe, a test) memory does."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from wfbatch.core.models import InputImage

DATA_URI_MAX_BYTES = 256 * 1024
"""A picture up to this size travels inline as a data URI (no upload, no expiry); a larger one is
uploaded. fal publishes no limit and Replicate takes data URIs under 1 MB (providers.md §12.3-4):
256 KiB keeps each request small whatever the model."""
REUSE_MARGIN = 3600.0
"""An upload expiring within this many seconds is not reused: a queued job may wait that long."""


class UploadMemo(Protocol):
    async def recall(self, sha256: str) -> str | None:
        """The URL of an upload of these bytes that stays valid for REUSE_MARGIN more; else None."""
        ...

    async def remember(self, sha256: str, url: str, expires_at: float) -> None: ...


class MemoryUploads:
    """An `UploadMemo` for one process (what a provider uses until the engine gives it the store's)."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[str, float]] = {}

    async def recall(self, sha256: str) -> str | None:
        found = self._known.get(sha256)
        return found[0] if found is not None and found[1] > time.time() + REUSE_MARGIN else None

    async def remember(self, sha256: str, url: str, expires_at: float) -> None:
        self._known[sha256] = (url, expires_at)


def data_uri(item: InputImage, data: bytes) -> str:
    return f"data:{item.media_type or 'image/png'};base64,{base64.b64encode(data).decode('ascii')}"


class UploadLocks:
    """One upload at a time per picture: jobs sending the same picture at once wait for the first
    one's upload and reuse it, instead of each uploading a copy."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @asynccontextmanager
    async def hold(self, sha256: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(sha256, asyncio.Lock())
        self._users[sha256] = self._users.get(sha256, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[sha256] -= 1
            if not self._users[sha256]:  # nobody waits: forget it (no lock kept per picture forever)
                del self._users[sha256], self._locks[sha256]
