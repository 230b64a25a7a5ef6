"""Benchmark 5 — engine overhead: jobs per second with an instant provider and tiny images (the
offline `local` provider, 64×64 PNG, latency 0), engine in this process: every job still goes
through the store, the limiter, the cache, the output writer and the manifest."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from bench.common import append_row, report, scratch
from wfbatch.core.parsing import parse_prompt_bytes
from wfbatch.engine.intake.ingest import ingest
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.home import HomeLayout
from wfbatch.settings import load_settings
from wfbatch.store import Store

JOBS = 2000


async def run(home: Path, max_in_flight: int) -> float:
    layout = HomeLayout(home)
    layout.ensure()
    raw = "".join(json.dumps({"prompt": f"tiny {i}", "width": 64, "height": 64}) + "\n" for i in range(JOBS))
    store = await Store.open(layout.db)
    try:
        batch = await ingest(
            store, layout, parse_prompt_bytes(raw.encode(), "tiny.jsonl"), raw.encode(), "local"
        )
        settings = load_settings(home, provider="local", local={"max_in_flight": max_in_flight})
        engine = Engine(store, settings, layout, batch_ids=[batch.batch.id])
        started = time.perf_counter()
        reason = await engine.run_until_idle()
        elapsed = time.perf_counter() - started
        counts = await store.counters.counts([batch.batch.id])
    finally:
        await store.close()
    assert reason.code == "done" and counts["done"] == JOBS, (reason, counts)
    return elapsed


def main() -> dict[str, Any]:
    shown: dict[str, Any] = {"jobs": JOBS, "image": "64x64 png, local provider, latency 0"}
    for in_flight in (2, 16):
        with scratch("overhead") as root:
            seconds = asyncio.run(run(root / "home", in_flight))
        shown[f"jobs/s (max_in_flight {in_flight})"] = JOBS / seconds
        shown[f"ms/job (max_in_flight {in_flight})"] = seconds / JOBS * 1000
    report("engine overhead", shown)
    append_row("overhead", shown)
    return shown


if __name__ == "__main__":
    main()
