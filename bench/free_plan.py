"""Benchmark 2 — requests per image on the Free plan (10 requests/min, polls included; 10
executions/min; 50 a day, so 40 prompts), same latencies and scaling as the saturation benchmark.
Every request the simulator received counts, refused ones (429) included."""

from __future__ import annotations

from typing import Any

from bench.common import IMG, append_row, report
from bench.plots import completions_over_time
from bench.saturation import LATENCY_REAL, MAX_IN_FLIGHT, SCALE
from bench.simrace import race
from wfbatch.sim.wireflow.plans import WireflowPlan

PROMPTS = 40


def main() -> dict[str, Any]:
    result = race(
        plan=WireflowPlan.FREE,
        prompts=PROMPTS,
        scale=SCALE,
        latency_real=LATENCY_REAL,
        max_in_flight=MAX_IN_FLIGHT,
    )
    ours, theirs = result.wfbatch, result.baseline
    shown: dict[str, Any] = {
        "prompts": PROMPTS,
        "plan": "free (10 req/min, 10 exec/min)",
        "wfbatch images": ours.images,
        "wfbatch requests (polls)": f"{ours.requests} ({ours.polls})",
        "wfbatch requests/image": ours.requests / max(1, ours.images),
        "wfbatch 429s": ours.rate_limited,
        "wfbatch makespan s": ours.makespan,
        "baseline images": theirs.images,
        "baseline lost": theirs.lost,
        "baseline requests (polls)": f"{theirs.requests} ({theirs.polls})",
        "baseline requests/image": theirs.requests / max(1, theirs.images),
        "baseline 429s": theirs.rate_limited,
        "baseline makespan s": theirs.makespan,
        "throughput ratio (wfbatch/baseline)": ours.throughput_per_window
        / max(1e-9, theirs.throughput_per_window),
    }
    completions_over_time(result, "Free plan: 40 prompts, 10 requests/min", IMG / "free-plan.png")
    report("free plan: requests per image", shown)
    append_row("free_plan", shown)
    return shown


if __name__ == "__main__":
    main()
