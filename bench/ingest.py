"""Benchmark 3 — ingest: a 100k-line .jsonl to committed jobs (parse, validate, expand, hash,
one transaction), against plain `sqlite3` `executemany` of the same rows into the same schema."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from bench.common import append_row, report, scratch
from wfbatch.core.parsing import parse_prompt_bytes
from wfbatch.engine.intake.ingest import ingest
from wfbatch.home import HomeLayout
from wfbatch.store import Reuse, Store
from wfbatch.store.schema import MIGRATIONS, step_text

LINES = 100_000
COLUMNS = (
    "uid",
    "batch_id",
    "idx",
    "line",
    "user_id",
    "provider",
    "spec",
    "prompt",
    "tags",
    "cache_key",
    "priority",
    "state",
    "created_at",
    "updated_at",
)


def make_file(path: Path, lines: int) -> bytes:
    rows = (
        json.dumps(
            {
                "prompt": f"Product photo of item {i} on a marble surface, studio lighting",
                "width": 1024,
                "height": 1024,
                "seed": i,
                "tags": ["catalog"],
            }
        )
        for i in range(lines)
    )
    raw = ("\n".join(rows) + "\n").encode()
    path.write_bytes(raw)
    return raw


async def wfbatch_ingest(home: Path, raw: bytes) -> tuple[dict[str, float], Path]:
    layout = HomeLayout(home)
    layout.ensure()
    store = await Store.open(layout.db)
    try:
        t0 = time.perf_counter()
        parsed = parse_prompt_bytes(raw, "big.jsonl")
        t1 = time.perf_counter()
        done = await ingest(store, layout, parsed, raw, "local", reuse=Reuse.NEVER)
        t2 = time.perf_counter()
    finally:
        await store.close()
    assert done.jobs == LINES
    return {"parse": t1 - t0, "expand+hash+insert": t2 - t1, "total": t2 - t0}, layout.db


def raw_executemany(source_db: Path, target_db: Path, *, triggers: bool = True) -> float:
    """The same rows, read back from wfbatch's database, into a fresh database with the same schema
    and the same pragmas as the store's connection (WAL, synchronous=NORMAL, foreign keys on), in
    one transaction."""
    with sqlite3.connect(source_db) as src:
        batch = src.execute("SELECT * FROM batches").fetchone()
        rows = src.execute(f"SELECT {', '.join(COLUMNS)} FROM jobs ORDER BY id").fetchall()
    db = sqlite3.connect(target_db, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        for step in MIGRATIONS:
            db.executescript(step_text(step, "sqlite"))
        if not triggers:  # what the counters cost: the same insert without them
            for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
                db.execute(f"DROP TRIGGER {name}")
        started = time.perf_counter()
        db.execute("BEGIN")
        db.execute(f"INSERT INTO batches VALUES ({', '.join('?' * len(batch))})", batch)
        db.executemany(
            f"INSERT INTO jobs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})", rows
        )
        db.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        db.close()


def main() -> dict[str, Any]:
    with scratch("ingest") as root:
        raw = make_file(root / "big.jsonl", LINES)
        times, db = asyncio.run(wfbatch_ingest(root / "home", raw))
        raw_seconds = raw_executemany(db, root / "raw.db")
        bare_seconds = raw_executemany(db, root / "bare.db", triggers=False)
    shown: dict[str, Any] = {
        "lines": LINES,
        "file MB": len(raw) / 1e6,
        "wfbatch s (total)": times["total"],
        "  parse+validate s": times["parse"],
        "  expand+hash+insert s": times["expand+hash+insert"],
        "raw executemany s": raw_seconds,
        "raw executemany without the counter triggers s": bare_seconds,
        "ratio raw/wfbatch": raw_seconds / times["total"],
        "ratio raw without triggers/wfbatch": bare_seconds / times["total"],
        "jobs/s": LINES / times["total"],
    }
    report("ingest", shown)
    append_row("ingest", {k.strip(): v for k, v in shown.items()})
    return shown


if __name__ == "__main__":
    main()
