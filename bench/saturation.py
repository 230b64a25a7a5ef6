"""Benchmark 1 — saturation: a few hundred prompts through the simulator on the Pro plan
(60 requests/min, 10 executions/min), latencies of a realistic generate-and-upscale workflow
(20–60 s), everything scaled ×20 so the wfbatch run takes about a minute. wfbatch vs the article's
loop, side by side on identical simulators."""

from __future__ import annotations

from typing import Any

from bench.common import IMG, TimeScale, append_row, report
from bench.plots import completions_over_time
from bench.simrace import Race, best_makespan, binding_limit, race, start_rate
from wfbatch.sim.wireflow.options import WireflowOptions
from wfbatch.sim.wireflow.plans import WireflowPlan

PROMPTS = 200
SCALE = TimeScale(20.0)
LATENCY_REAL = (20.0, 60.0)
MAX_IN_FLIGHT = 50  # Wireflow documents no concurrency cap; wfbatch's default (4) would bind first.


def figures(result: Race) -> dict[str, Any]:
    ours, theirs = result.wfbatch, result.baseline
    window = result.options.window
    limit_name, limit = binding_limit(result)
    best = best_makespan(result)
    return {
        "prompts": result.prompts,
        "plan": WireflowOptions.of(result.options).plan.value,
        "scale": f"x{SCALE.factor:g} (window {window:g} s)",
        "latency (real s)": f"{LATENCY_REAL[0]:g}-{LATENCY_REAL[1]:g}",
        "binding limit": f"{limit:g} {limit_name}",
        "wfbatch start rate / limit": start_rate(ours, window) / limit,
        "wfbatch 429s": ours.rate_limited,
        "wfbatch makespan s": ours.makespan,
        "best makespan s": best,
        "wfbatch best/makespan": best / ours.makespan,
        "wfbatch images": ours.images,
        "baseline images": theirs.images,
        "baseline lost": theirs.lost,
        "baseline start rate / limit": start_rate(theirs, window) / limit,
        "baseline 429s": theirs.rate_limited,
        "baseline makespan s": theirs.makespan,
        "throughput ratio (wfbatch/baseline)": ours.throughput_per_window / theirs.throughput_per_window,
        "requests/image wfbatch": ours.requests / max(1, ours.images),
        "requests/image baseline": theirs.requests / max(1, theirs.images),
    }


def main() -> dict[str, Any]:
    result = race(
        plan=WireflowPlan.PRO,
        prompts=PROMPTS,
        scale=SCALE,
        latency_real=LATENCY_REAL,
        max_in_flight=MAX_IN_FLIGHT,
    )
    shown = figures(result)
    completions_over_time(
        result, "Saturation: 200 prompts, Pro plan, 20-60 s latency", IMG / "saturation.png"
    )
    report("saturation", shown)
    append_row("saturation", shown)
    return shown


if __name__ == "__main__":
    main()
