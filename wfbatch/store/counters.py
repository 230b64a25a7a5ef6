"""The counters in the SQLite store: jobs by state, charges and queue waits, kept by triggers
(schema 7 and 9) so that status answers never scan the jobs, and checked against the tables."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from wfbatch.core.states import empty_counts
from wfbatch.store.database import POSTGRES
from wfbatch.store.db import SqliteAggregate
from wfbatch.store.rows import CounterCheck
from wfbatch.store.sql import within

log = logging.getLogger("wfbatch.store")


class SqliteCounters(SqliteAggregate):
    """`CountersApi` on SQLite: reads of the trigger-kept counter tables, and their check."""

    async def counts(self, batch_ids: Iterable[str] | None = None) -> dict[str, int]:
        """Jobs by state, every state present (zero where none). From the counters (schema 7)."""
        counts = empty_counts()
        scope, params = within("batch_id", list(batch_ids) if batch_ids is not None else None)
        rows = await self.fetchall(
            f"SELECT state, SUM(n) AS n FROM job_counts WHERE 1 = 1{scope} GROUP BY state", params
        )
        for row in rows:
            counts[row["state"]] = row["n"]
        return counts

    async def counts_by(self, column: str) -> dict[str, dict[str, int]]:
        """Jobs by state for each batch (`batch_id`) or provider (`provider`) that has any."""
        if column not in {"batch_id", "provider"}:
            raise ValueError(column)
        rows = await self.fetchall(
            f"SELECT {column} AS k, state, SUM(n) AS n FROM job_counts GROUP BY k, state HAVING SUM(n) > 0"
        )
        result: dict[str, dict[str, int]] = {}
        for row in rows:
            result.setdefault(row["k"], empty_counts())[row["state"]] = row["n"]
        return result

    async def credits_used_by(self, column: str, keys: Sequence[str] | None = None) -> dict[str, float]:
        """Credits charged so far, summed by `batch_id` or `provider` (optionally only `keys`), from
        the charge totals the ledger's trigger keeps (schema 7): one row per batch and provider."""
        if column not in {"batch_id", "provider"}:
            raise ValueError(column)
        if keys is not None and not keys:
            return {}
        scope, params = within(column, keys)
        rows = await self.fetchall(
            f"SELECT {column} AS k, SUM(credits) AS c FROM charge_totals WHERE 1 = 1{scope} GROUP BY k",
            params,
        )
        return {r["k"]: float(r["c"] or 0.0) for r in rows}

    async def counts_for_batches(self, batch_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Jobs by state for just these batches."""
        result = {batch_id: empty_counts() for batch_id in batch_ids}
        if not batch_ids:
            return result
        scope, params = within("batch_id", batch_ids)
        rows = await self.fetchall(
            "SELECT batch_id, state, SUM(n) AS n FROM job_counts"
            f" WHERE 1 = 1{scope} GROUP BY batch_id, state",
            params,
        )
        for row in rows:
            result[row["batch_id"]][row["state"]] = row["n"]
        return result

    async def check_counters(self) -> CounterCheck:
        """Compare the counters with what they count (COUNT(*) and SUM over the tables) and rebuild
        the ones that disagree, in one write transaction so no change slips between the two reads.
        The triggers make a disagreement impossible short of a damaged file or a hand edit with the
        triggers dropped; this is the check that says so. A full scan: call it once, on start.

        The comparison reads one snapshot on a connection of its own (store/aside.py), so the API
        and the engine go on meanwhile (3 s at a million jobs); only counters found stale are
        compared again and rebuilt under the write lock."""
        queries = [
            (sql, ()) for kept_sql, counted_sql, _ in _COUNTERS.values() for sql in (kept_sql, counted_sql)
        ]
        read = await self._read_aside(queries)
        pairs = zip(read[::2], read[1::2], strict=True)
        if all(_same_totals(_keyed(kept), _keyed(counted)) for kept, counted in pairs):
            return CounterCheck(rebuilt=())
        async with self.transaction() as conn:
            if self._db.dialect == POSTGRES:
                # Other daemons write meanwhile (SQLite's BEGIN IMMEDIATE already shuts them out):
                # hold their writes to the counted tables while the counters are compared and rebuilt.
                await conn.execute("LOCK TABLE jobs, ledger IN SHARE MODE")
            stale: list[str] = []
            for name, (kept_sql, counted_sql, rebuild) in _COUNTERS.items():
                kept = _keyed(await conn.execute_fetchall(kept_sql))
                counted = _keyed(await conn.execute_fetchall(counted_sql))
                if not _same_totals(kept, counted):
                    stale.append(name)
                    log.warning("%s: the %s counters disagreed with their tables; rebuilt", self.path, name)
                    for statement in rebuild:
                        await conn.execute(statement)
        return CounterCheck(rebuilt=tuple(stale))

    async def queue_waits(self, recent: int = 1000) -> tuple[int, float, list[float]]:
        """Seconds from enqueue to first start: (count, sum) over every started job, and the
        waits of the `recent` most recently started ones."""
        row = await self.fetchone("SELECT started AS n, seconds AS s FROM wait_totals WHERE id = 1")
        rows = await self.fetchall(
            "SELECT started_at - created_at AS w FROM jobs WHERE started_at IS NOT NULL"
            " ORDER BY started_at DESC LIMIT ?",
            (recent,),
        )
        count = int(row["n"]) if row else 0
        total = float(row["s"] or 0.0) if row else 0.0
        return count, total, [max(0.0, float(r["w"])) for r in rows]

    async def pending_reviews(self) -> int:
        """Images done and waiting for a review decision (from the partial index of schema 11)."""
        row = await self.fetchone(
            "SELECT COUNT(*) AS n FROM jobs INDEXED BY jobs_review_pending"
            " WHERE state = 'done' AND review = 'pending'"
        )
        return int(row["n"]) if row else 0

    async def cache_hits(self, batch_ids: Sequence[str]) -> int:
        scope, params = within("batch_id", batch_ids)
        row = await self.fetchone(f"SELECT COUNT(*) AS n FROM jobs WHERE cache_hit = 1{scope}", params)
        return int(row["n"]) if row else 0


# Each counter table: (its rows, the same figures counted from the table it counts, its rebuild).
# Every row is (key..., figure); a key absent on one side counts as zero.
_COUNTERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "job_counts": (
        "SELECT batch_id, provider, state, n FROM job_counts",
        "SELECT batch_id, provider, state, COUNT(*) FROM jobs GROUP BY batch_id, provider, state",
        (
            "DELETE FROM job_counts",
            "INSERT INTO job_counts (batch_id, provider, state, n)"
            " SELECT batch_id, provider, state, COUNT(*) FROM jobs GROUP BY batch_id, provider, state",
        ),
    ),
    "charge_totals": (
        "SELECT batch_id, provider, credits FROM charge_totals",
        "SELECT batch_id, provider, SUM(credits) FROM ledger WHERE kind = 'charge'"
        " GROUP BY batch_id, provider",
        (
            "DELETE FROM charge_totals",
            "INSERT INTO charge_totals (batch_id, provider, credits) SELECT batch_id, provider, SUM(credits)"
            " FROM ledger WHERE kind = 'charge' GROUP BY batch_id, provider",
        ),
    ),
    "wait_totals": (
        "SELECT 'started', started FROM wait_totals UNION ALL SELECT 'seconds', seconds FROM wait_totals",
        "SELECT 'started', COUNT(*) FROM jobs WHERE started_at IS NOT NULL UNION ALL"
        " SELECT 'seconds', COALESCE(SUM(started_at - created_at), 0) FROM jobs WHERE started_at IS NOT NULL",
        (
            "INSERT INTO wait_totals (id, started, seconds) SELECT 1, COUNT(*),"
            " COALESCE(SUM(started_at - created_at), 0) FROM jobs WHERE started_at IS NOT NULL"
            " ON CONFLICT (id) DO UPDATE SET started = excluded.started, seconds = excluded.seconds",
        ),
    ),
}


def _keyed(rows: Iterable[Sequence[Any]]) -> dict[tuple[Any, ...], Any]:
    """A counter query's rows as {key columns: the last column}."""
    return {tuple(r[:-1]): r[-1] for r in rows}


def _same_totals(kept: dict[tuple[Any, ...], Any], counted: dict[tuple[Any, ...], Any]) -> bool:
    """Equal figures for every key (absent = 0); sums of floats within a rounding error."""
    for key in kept.keys() | counted.keys():
        a, b = kept.get(key, 0) or 0, counted.get(key, 0) or 0
        if abs(a - b) > 1e-6 * max(1.0, abs(a), abs(b)):
            return False
    return True
