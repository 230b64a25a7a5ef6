"""The cache index in the SQLite store: cache key → the sha256 and media type of the original; and
the input pictures uploaded to a provider's storage (sha256 → URL and expiry)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from wfbatch.store.db import SqliteAggregate


class SqliteCache(SqliteAggregate):
    """`CacheApi` on SQLite."""

    async def get(self, key: str) -> tuple[str, str] | None:
        row = await self.fetchone("SELECT sha256, media_type FROM cache_entries WHERE key = ?", (key,))
        return (row["sha256"], row["media_type"]) if row else None

    async def put(self, key: str, sha256: str, media_type: str) -> None:
        await self._write(
            "INSERT INTO cache_entries (key, sha256, media_type, created_at) VALUES (?,?,?,?)"
            " ON CONFLICT (key) DO UPDATE SET sha256 = excluded.sha256, media_type = excluded.media_type,"
            " created_at = excluded.created_at",
            (key, sha256, media_type, time.time()),
        )

    async def cached_keys(self, keys: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            rows = await self.fetchall(
                f"SELECT key FROM cache_entries WHERE key IN ({','.join('?' * len(chunk))})", chunk
            )
            found.update(r["key"] for r in rows)
        return found

    async def upload_of(self, provider: str, account: str, sha256: str) -> tuple[str, float] | None:
        row = await self.fetchone(
            "SELECT url, expires_at FROM input_uploads WHERE provider = ? AND account = ? AND sha256 = ?",
            (provider, account, sha256),
        )
        return (row["url"], float(row["expires_at"])) if row else None

    async def remember_upload(
        self, provider: str, account: str, sha256: str, url: str, expires_at: float
    ) -> None:
        await self._write(
            "INSERT INTO input_uploads (provider, account, sha256, url, expires_at, created_at)"
            " VALUES (?,?,?,?,?,?) ON CONFLICT (provider, account, sha256) DO UPDATE"
            " SET url = excluded.url, expires_at = excluded.expires_at, created_at = excluded.created_at",
            (provider, account, sha256, url, expires_at, time.time()),
        )
