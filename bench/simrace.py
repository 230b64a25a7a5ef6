"""wfbatch and the article's loop, one after the other, each against a fresh simulator with identical
settings (same plan, window, latency distribution and seed). Both clients run as subprocesses; the
simulator runs in this process, so it can report the server-side time of every accepted start."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from bench.common import (
    API_KEY,
    TimeScale,
    clean_env,
    product_prompts,
    run_wfbatch,
    scratch,
    wireflow_env,
    write_jsonl,
)
from wfbatch.sim import RunningSimulator, SimOptions
from wfbatch.sim.wireflow.options import window_limits
from wfbatch.sim.wireflow.plans import WireflowPlan


@dataclass(frozen=True)
class Side:
    """What one client achieved against its simulator."""

    name: str
    completed_at: list[float]
    """Seconds since the first accepted start, sorted."""
    starts: list[float]
    """Seconds since the first accepted start of every accepted start."""
    images: int
    lost: int
    requests: int
    """Every API request the simulator received (starts, polls; refused ones too)."""
    polls: int
    rate_limited: int
    executions: int
    wall_seconds: float

    @property
    def makespan(self) -> float:
        return self.completed_at[-1] if self.completed_at else float("nan")

    @property
    def throughput_per_window(self) -> float:
        return self.images / self.makespan if self.completed_at else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in (
                "name",
                "images",
                "lost",
                "requests",
                "polls",
                "rate_limited",
                "executions",
                "wall_seconds",
                "makespan",
            )
        }


@dataclass(frozen=True)
class Race:
    options: SimOptions
    scale: TimeScale
    prompts: int
    wfbatch: Side
    baseline: Side


def _record_first_request(sim: RunningSimulator) -> list[float]:
    """Wrap the simulator's request counter to note when the first API request arrived."""
    seen: list[float] = []
    count = sim.state.count_request

    def counting(route: str) -> None:
        if not seen:
            seen.append(sim.state.clock())
        count(route)

    sim.state.count_request = counting  # type: ignore[method-assign]
    return seen


def _side(
    name: str, sim: RunningSimulator, first: list[float], completed: list[float], lost: int, wall: float
) -> Side:
    """Times are counted from the first API request the simulator received."""
    stats = sim.state.stats()
    starts = sorted(sim.state.book.accepted_starts)
    t0 = first[0] if first else (starts[0] if starts else 0.0)
    by_route: dict[str, int] = stats["requests"]["by_route"]
    return Side(
        name=name,
        completed_at=sorted(t - t0 for t in completed),
        starts=[t - t0 for t in starts],
        images=len(completed),
        lost=lost,
        requests=int(stats["requests"]["total"]),
        polls=int(by_route.get("poll", 0)),
        rate_limited=int(stats["rate_limited"]),
        executions=int(stats["executions_created"]),
        wall_seconds=wall,
    )


def race(
    *,
    plan: WireflowPlan,
    prompts: int,
    scale: TimeScale,
    latency_real: tuple[float, float],
    max_in_flight: int,
    seed: int = 11,
) -> Race:
    options = SimOptions(
        plan=plan,
        latency=(scale(latency_real[0]), scale(latency_real[1])),
        window=scale.window,
        seed=seed,
        api_key=API_KEY,
    )
    texts = product_prompts(prompts)
    with scratch("race") as root:
        file = write_jsonl(root / "prompts.jsonl", texts, width=256, height=256)
        with RunningSimulator(options) as sim:
            first = _record_first_request(sim)
            env = wireflow_env(sim.base_url, scale, plan=plan.value, max_in_flight=max_in_flight)
            run = run_wfbatch(root / "home", [file], env)
            ours = _side("wfbatch", sim, first, run.finished_at, int(run.summary["failed"]), run.wall_seconds)
        with RunningSimulator(options) as sim:
            first = _record_first_request(sim)
            initial, factor, most = scale.poll
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.baseline",
                    "--base-url",
                    sim.base_url,
                    "--prompts",
                    str(file),
                    "--poll",
                    f"{initial},{factor},{most}",
                    "--api-key",
                    API_KEY,
                ],
                env=clean_env({}),
                capture_output=True,
                timeout=1800,
                check=True,
            )
            report = json.loads(done.stdout)
            theirs = _side(
                "baseline",
                sim,
                first,
                report["completed_at"],
                sum(report["lost"].values()),
                report["ended_at"] - report["started_at"],
            )
    return Race(options, scale, prompts, ours, theirs)


def best_makespan(race: Race) -> float:
    """The least time the limits allow for all images, in windows' seconds: starts can come at most
    E per window (the first E at once), every image needs at least one poll (at most R per window),
    and the last image takes at least the shortest latency after its start."""
    o, limits = race.options, window_limits(race.options)
    n, window = race.prompts, o.window
    by_starts = ((n - 1) // limits.executions) * window
    by_polls = ((n - 1) // limits.requests) * window
    return max(by_starts, by_polls) + o.latency[0]


def binding_limit(race: Race) -> tuple[str, float]:
    """The tighter of the two per-window limits for images (starts, or the one poll each needs)."""
    limits = window_limits(race.options)
    if limits.requests < limits.executions:
        return ("requests/min (one poll per image at least)", float(limits.requests))
    return ("executions/min", float(limits.executions))


def start_rate(side: Side, window: float) -> float:
    """Starts per window over the run: N / (last start − first start + one window). Perfect bursts of
    E every window give exactly E (when N is a multiple of E)."""
    if not side.starts:
        return 0.0
    return len(side.starts) / (side.starts[-1] - side.starts[0] + window) * window
