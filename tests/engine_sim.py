"""Running the real engine against the simulator: settings that point the Wireflow provider at it."""

from __future__ import annotations

import json
from typing import Any

from wfbatch.core.parsing import parse_prompt_bytes
from wfbatch.engine.intake.ingest import Ingested, ingest
from wfbatch.engine.loop.scheduler import Engine, StopReason
from wfbatch.home import HomeLayout
from wfbatch.settings import Settings, load_settings
from wfbatch.sim import RunningSimulator
from wfbatch.store import Reuse, StoreApi

TEST_KEY = "sk-test-engine-key-never-shown"


def wireflow_engine_settings(home: Any, sim: RunningSimulator, **wireflow: Any) -> Settings:
    """Fast polls and generous limits unless a test sets them: the simulator decides what binds."""
    values: dict[str, Any] = {
        "api_key": TEST_KEY,
        "base_url": sim.base_url,
        "workflow_id": "wf_demo",
        "request_timeout": 5.0,
        "requests_per_minute": 100_000,
        "executions_per_minute": 100_000,
        "daily_executions": None,
        "max_in_flight": 4,
        "poll_initial": 0.05,
        "poll_factor": 1.5,
        "poll_max": 0.2,
        "backoff_initial": 0.05,
        "backoff_max": 0.2,
    }
    values.update(wireflow)
    return load_settings(home, provider="wireflow", wireflow=values)


def prompts(count: int, prefix: str = "prompt", **fields: Any) -> bytes:
    return "\n".join(
        json.dumps({"prompt": f"{prefix} {i}", "width": 64, "height": 64, **fields}) for i in range(count)
    ).encode()


async def enqueue(store: StoreApi, layout: HomeLayout, raw: bytes, name: str = "batch.jsonl") -> Ingested:
    return await ingest(
        store, layout, parse_prompt_bytes(raw, name), raw, "wireflow", reuse=Reuse.NEVER
    )


async def run_engine(
    store: StoreApi, settings: Settings, layout: HomeLayout, batch_ids: list[str]
) -> tuple[StopReason, Engine]:
    engine = Engine(store, settings, layout, batch_ids=batch_ids)
    return await engine.run_until_idle(), engine
