"""Content-addressed originals: `cache/ab/abcdef….<ext>` keyed by the image's sha256, indexed in
SQLite by the job's cache key. A hit costs no provider request."""

from __future__ import annotations

import asyncio
from pathlib import Path

from wfbatch.core.hashing import content_hash
from wfbatch.outputs import atomic_write_bytes
from wfbatch.providers.base import Image
from wfbatch.store import StoreApi

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


class ImageCache:
    def __init__(self, root: Path, store: StoreApi) -> None:
        self.root = root
        self._store = store

    def path_of(self, sha256: str, media_type: str) -> Path:
        """Where the original of this digest is kept."""
        return self._path(sha256, media_type)

    def _path(self, sha256: str, media_type: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.{_EXTENSIONS.get(media_type, 'bin')}"

    async def get(self, key: str) -> Image | None:
        found = await self._store.cache.get(key)
        if found is None:
            return None
        sha256, media_type = found
        return await self.read(sha256, media_type)

    async def read(self, sha256: str, media_type: str) -> Image | None:
        """The original of this digest, if it is on disk and intact."""
        path = self._path(sha256, media_type)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None  # the file was cleaned away: regenerate
        if content_hash(data) != sha256:
            return None  # damaged on disk: regenerate rather than serve a wrong picture
        return Image(data=data, media_type=media_type, metadata={"cache": sha256})

    async def put(self, key: str, image: Image) -> str:
        sha256 = content_hash(image.data)
        path = self._path(sha256, image.media_type)
        if not path.exists():
            await asyncio.to_thread(atomic_write_bytes, path, image.data)
        await self._store.cache.put(key, sha256, image.media_type)
        return sha256
