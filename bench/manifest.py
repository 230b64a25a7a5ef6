"""Benchmark 7 — manifest refresh as a batch grows: one `OutputWriter.write_batch_files` (read the
batch's jobs, build the manifest, write it atomically) at 1k, 10k and 100k entries, all done, and
what that means per finished job under the writer's rule (a batch's manifest is rewritten at most
every max(1 s, 20 × its last rewrite time): at most ~5 % of the engine's time, whatever the size)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from bench.common import append_row, median, report, scratch
from wfbatch.core.parsing import parse_prompt_bytes
from wfbatch.engine.intake.ingest import ingest
from wfbatch.engine.loop.writer import MIN_MANIFEST_INTERVAL, OutputWriter
from wfbatch.home import HomeLayout
from wfbatch.store import Reuse, Store

SIZES = (1_000, 10_000, 100_000)
REPEATS = 3


async def refresh_seconds(home: Path, size: int) -> tuple[float, float, float]:
    """(median seconds of one refresh, of its database read, of its manifest build + write)."""
    layout = HomeLayout(home)
    layout.ensure()
    raw = "".join(
        json.dumps({"prompt": f"item {i} on a marble table", "seed": i}) + "\n" for i in range(size)
    )
    store = await Store.open(layout.db)
    try:
        done = await ingest(
            store,
            layout,
            parse_prompt_bytes(raw.encode(), "m.jsonl"),
            raw.encode(),
            "local",
            reuse=Reuse.NEVER,
        )
        async with store.transaction() as conn:
            await conn.execute(
                "UPDATE jobs SET state = 'done', attempts = 1, started_at = created_at,"
                " finished_at = created_at + 1 WHERE batch_id = ?",
                (done.batch.id,),
            )
        writer = OutputWriter(store, lambda name: name)
        totals: list[float] = []
        reads: list[float] = []
        for _ in range(REPEATS):
            started = time.perf_counter()
            jobs = await store.jobs.jobs_for_batch(done.batch.id)
            reads.append(time.perf_counter() - started)
            del jobs
            started = time.perf_counter()
            await writer.write_batch_files(done.batch.id, force_sheet=False)
            totals.append(time.perf_counter() - started)
        return median(totals), median(reads), median(totals) - median(reads)
    finally:
        await store.close()


def main() -> dict[str, Any]:
    shown: dict[str, Any] = {}
    with scratch("manifest") as root:
        for size in SIZES:
            total, read, rest = asyncio.run(refresh_seconds(root / f"h{size}", size))
            interval = max(MIN_MANIFEST_INTERVAL, 20 * total)
            shown[f"{size:,} entries: refresh ms"] = total * 1000
            shown[f"{size:,} entries: read ms"] = read * 1000
            shown[f"{size:,} entries: build+write ms"] = rest * 1000
            shown[f"{size:,} entries: us per entry"] = total / size * 1e6
            shown[f"{size:,} entries: rewrite interval s"] = interval
            shown[f"{size:,} entries: share of engine time (max)"] = f"{total / interval:.1%}"
    report("manifest refresh vs batch size", shown)
    append_row("manifest", shown)
    return shown


if __name__ == "__main__":
    main()
