"""The seed article's batch loop, in Python, as the reference wfbatch is measured against.

The article (docs/seed-article: "How to Run Batch Image Generation via API") does:

    for each slice of 5 prompts:
        executions = await Promise.all(slice.map(executeWorkflow))        # start all 5
        completed  = await Promise.all(executions.map(pollExecution))     # wait for the slowest
    pollExecution: up to 20 polls; sleep 1 s, ×1.5 each time, capped at 10 s; COMPLETED → done,
                   FAILED → throw; anything else (a 429 or 5xx body too) → poll again.

No limiter, no retry, no handling of 429/5xx on the start. Deviations, each one in the baseline's
favour or needed for it to finish at all:

1. Idempotency key. The article sends `batch-${Date.now()}-${prompt.slice(0, 20)}`. The five starts
   of a slice are built in the same millisecond, and template prompts share their first 20
   characters, so two different bodies arrive with one key: the API answers 409 and the article's
   code polls `executions/undefined`. We send `batch-<index>-<prompt[:20]>` (stable and unique).
2. Where the article's `Promise.all` would reject and abort the whole run (a start without an
   execution id, a FAILED execution, a body that is not JSON, 20 polls without an end), we count
   that prompt as lost and go on with the next slice; no polls are sent for a start that failed.
3. The article stops at the poll answer; we do not download the image either (wfbatch does, and
   writes it to disk: its times include that work).

Durations are scaled like the simulator's window (see `bench.common.TimeScale`). Run standalone:
`python -m bench.baseline --base-url URL --prompts FILE --poll 0.05,1.5,0.5` prints a JSON report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

BATCH_SIZE = 5
MAX_POLL_ATTEMPTS = 20


@dataclass
class BaselineReport:
    completed_at: list[float] = field(default_factory=list)
    """time.time() at which each COMPLETED poll answer arrived."""
    lost: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    started_at: float = 0.0
    ended_at: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "completed_at": self.completed_at,
            "lost": dict(self.lost),
            "requests": dict(self.requests),
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }


class Lost(Exception):
    """Where the article's code would throw (and abort the run)."""


class ArticleLoop:
    def __init__(self, client: httpx.AsyncClient, workflow_id: str, poll: tuple[float, float, float]) -> None:
        self.client = client
        self.workflow_id = workflow_id
        self.poll_initial, self.poll_factor, self.poll_max = poll
        self.report = BaselineReport()

    async def execute_workflow(self, index: int, prompt: str) -> str:
        body = {
            "nodes": [
                {
                    "id": "input_1",
                    "type": "basedNode",
                    "position": {"x": 0, "y": 0},
                    "data": {
                        "label": "Prompt",
                        "category": "input",
                        "nodeType": "input:text",
                        "params": {"text": prompt, "prompt": prompt},
                    },
                }
            ],
            "edges": [],
        }
        self.report.requests["execute"] += 1
        res = await self.client.post(
            f"/workflows/{self.workflow_id}/execute",
            json=body,
            headers={"Idempotency-Key": f"batch-{index}-{prompt[:20]}"},  # deviation 1
        )
        self.report.statuses[res.status_code] += 1
        try:
            data = res.json()
        except ValueError as error:
            raise Lost("execute: body is not JSON") from error
        runs = data.get("executionRuns") if isinstance(data, dict) else None
        exec_id = runs[0].get("id") if runs else (data.get("executionId") if isinstance(data, dict) else None)
        if not exec_id:
            raise Lost(f"execute: HTTP {res.status_code}, no execution id")  # deviation 2
        return str(exec_id)

    async def poll_execution(self, exec_id: str) -> dict[str, Any]:
        delay = self.poll_initial
        for _ in range(MAX_POLL_ATTEMPTS):
            self.report.requests["poll"] += 1
            res = await self.client.get(f"/workflows/executions/{exec_id}/poll")
            self.report.statuses[res.status_code] += 1
            try:
                data = res.json()
            except ValueError as error:
                raise Lost("poll: body is not JSON") from error
            status = data.get("status") if isinstance(data, dict) else None
            if status == "COMPLETED":
                self.report.completed_at.append(time.time())
                return dict(data)
            if status == "FAILED":
                raise Lost("FAILED")
            await asyncio.sleep(delay)
            delay = min(delay * self.poll_factor, self.poll_max)
        raise Lost("Polling timed out")

    async def _guard(self, coro: Any) -> Any:
        try:
            return await coro
        except (Lost, httpx.HTTPError) as error:
            self.report.lost[str(error).split(":")[0] or type(error).__name__] += 1
            return None

    async def batch_generate(self, prompts: list[str]) -> BaselineReport:
        self.report.started_at = time.time()
        for i in range(0, len(prompts), BATCH_SIZE):
            batch = list(enumerate(prompts[i : i + BATCH_SIZE], start=i))
            executions = await asyncio.gather(*(self._guard(self.execute_workflow(n, p)) for n, p in batch))
            await asyncio.gather(*(self._guard(self.poll_execution(e)) for e in executions if e))
        self.report.ended_at = time.time()
        return self.report


async def run_baseline(
    base_url: str,
    prompts: list[str],
    poll: tuple[float, float, float],
    api_key: str,
    workflow_id: str = "wf_demo",
) -> BaselineReport:
    headers = {"Authorization": f"Bearer {api_key}"}
    limits = httpx.Limits(max_connections=BATCH_SIZE * 2)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30.0, limits=limits) as client:
        return await ArticleLoop(client, workflow_id, poll).batch_generate(prompts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--prompts", required=True, type=Path, help="a .jsonl file of {prompt} objects")
    parser.add_argument("--poll", default="1,1.5,10", help="initial,factor,max seconds")
    parser.add_argument("--api-key", default="sk-bench-key")
    args = parser.parse_args(argv)
    prompts = [json.loads(line)["prompt"] for line in args.prompts.read_text().splitlines() if line.strip()]
    initial, factor, most = (float(x) for x in args.poll.split(","))
    report = asyncio.run(run_baseline(args.base_url, prompts, (initial, factor, most), args.api_key))
    json.dump(report.as_json(), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
