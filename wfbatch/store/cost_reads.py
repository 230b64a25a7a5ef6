"""What `wfbatch costs` reads: the ledger's charges and the jobs' images, grouped to the finest cell
(batch, provider, model, day, account) so any coarser grouping is a sum of cells."""

from __future__ import annotations

from typing import Any

from wfbatch.store.database import POSTGRES, SQLITE, Dialect, SqlDatabase
from wfbatch.store.rows import CostLine, PossibleDuplicate
from wfbatch.store.sql import count_if

# Local calendar days, like `ledger_day` and the providers' daily caps. On PostgreSQL "local" is the
# session's TimeZone, which the store sets to this machine's (store/pg/db.py).
_JOB_DAYS: dict[Dialect, str] = {
    SQLITE: "date(COALESCE(j.finished_at, j.updated_at), 'unixepoch', 'localtime')",
    POSTGRES: "to_char(to_timestamp(COALESCE(j.finished_at, j.updated_at)), 'YYYY-MM-DD')",
}
_MODEL = "json_extract(j.spec, '$.model')"


def _window(column: str, since: str | None, until: str | None) -> tuple[str, list[Any]]:
    where, params = [], []
    if since:
        where.append(f"{column} >= ?")
        params.append(since)
    if until:
        where.append(f"{column} <= ?")
        params.append(until)
    return "".join(f" AND {w}" for w in where), params


async def cost_lines(db: SqlDatabase, since: str | None, until: str | None) -> list[CostLine]:
    """Every cell with an image, a cache hit, a charge or a refund between `since` and `until`
    (ISO dates, both included)."""
    job_day = _JOB_DAYS[db.dialect]
    job_window, job_params = _window(job_day, since, until)
    ledger_window, ledger_params = _window("l.day", since, until)
    made, spent = await db.read_aside(
        [
            (
                f"SELECT j.batch_id, b.name, j.provider, {_MODEL} AS model, {job_day} AS day,"
                " j.account AS account,"
                f" {count_if('j.cache_hit = 0')} AS images, {count_if('j.cache_hit = 1')} AS cache_hits"
                " FROM jobs j JOIN batches b ON b.id = j.batch_id"
                f" WHERE j.state = 'done'{job_window}"
                " GROUP BY j.batch_id, b.name, j.provider, model, day, j.account",
                job_params,
            ),
            (
                f"SELECT l.batch_id, b.name, l.provider, {_MODEL} AS model, l.day AS day,"
                " l.account AS account,"
                " SUM(CASE WHEN l.kind = 'charge' THEN l.credits ELSE 0 END) AS charged,"
                " SUM(CASE WHEN l.kind = 'refund' THEN -l.credits ELSE 0 END) AS refunds"
                " FROM ledger l JOIN jobs j ON j.id = l.job_id JOIN batches b ON b.id = l.batch_id"
                f" WHERE l.kind IN ('charge', 'refund'){ledger_window}"
                " GROUP BY l.batch_id, b.name, l.provider, model, day, l.account",
                ledger_params,
            ),
        ]
    )
    cells: dict[tuple[str, str, str | None, str, str | None], dict[str, Any]] = {}
    for rows, columns in ((made, ("images", "cache_hits")), (spent, ("charged", "refunds"))):
        for row in rows:
            key = (row["batch_id"], row["provider"], row["model"], row["day"], row["account"])
            cell = cells.setdefault(key, {"batch_name": row["name"]})
            cell.update((column, row[column] or 0) for column in columns)
    return [
        CostLine(batch_id, cell.pop("batch_name"), provider, model, day, account=account, **cell)
        for (batch_id, provider, model, day, account), cell in sorted(
            cells.items(), key=lambda kv: _sort_key(kv[0])
        )
    ]


def _sort_key(key: tuple[str, str, str | None, str, str | None]) -> tuple[str, str, str, str, str]:
    batch_id, provider, model, day, account = key
    return day, batch_id, provider, model or "", account or ""


async def average_charges(db: SqlDatabase) -> dict[tuple[str, str | None], float]:
    """What one image of each (provider, model) was charged on average, over the whole ledger: the
    price a cache hit would have cost."""
    rows = await db.fetchall(
        f"SELECT l.provider, {_MODEL} AS model, SUM(l.credits) AS credits, COUNT(DISTINCT l.job_id) AS n"
        " FROM ledger l JOIN jobs j ON j.id = l.job_id WHERE l.kind = 'charge'"
        " GROUP BY l.provider, model"
    )
    return {(r["provider"], r["model"]): float(r["credits"]) / int(r["n"]) for r in rows if r["n"]}


async def possible_duplicates(
    db: SqlDatabase, since: str | None, until: str | None
) -> list[PossibleDuplicate]:
    """Jobs that may have been paid for twice, on the day they finished (or last changed)."""
    job_day = _JOB_DAYS[db.dialect]
    window, params = _window(job_day, since, until)
    rows = await db.fetchall(
        f"SELECT j.uid, j.batch_id, j.provider, {_MODEL} AS model, {job_day} AS day, j.credits, j.account,"
        " j.possible_duplicate_charge AS why FROM jobs j"
        f" WHERE j.possible_duplicate_charge IS NOT NULL{window} ORDER BY day, j.id",
        params,
    )
    return [
        PossibleDuplicate(
            r["uid"], r["batch_id"], r["provider"], r["model"], r["day"], r["credits"], r["why"], r["account"]
        )
        for r in rows
    ]
