"""Pauses in the SQLite store: a scope (global, a provider) held, and why."""

from __future__ import annotations

import time

from wfbatch.store.db import SqliteAggregate


class SqlitePauses(SqliteAggregate):
    """`PausesApi` on SQLite."""

    async def by_scope(self) -> dict[str, str]:
        rows = await self.fetchall("SELECT scope, reason FROM pauses")
        return {r["scope"]: r["reason"] for r in rows}

    async def set_pause(self, scope: str, reason: str) -> None:
        await self._write(
            "INSERT INTO pauses (scope, reason, created_at) VALUES (?,?,?)"
            " ON CONFLICT (scope) DO UPDATE SET reason = excluded.reason, created_at = excluded.created_at",
            (scope, reason, time.time()),
        )

    async def clear_pause(self, scope: str) -> bool:
        return await self._write("DELETE FROM pauses WHERE scope = ?", (scope,)) > 0
