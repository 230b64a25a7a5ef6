"""Shared helpers for the benchmarks: the machine line, the results log in docs/benchmarks.md,
time scaling for simulator runs, prompt files, and running `wfbatch run` as a subprocess."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmarks.md"
IMG = REPO / "docs" / "img"
LOG_HEADER = "## Results log"
API_KEY = "sk-bench-key"


def machine() -> str:
    system = f"{platform.system()} {platform.release()} {platform.machine()}"
    return f"{system}, {os.cpu_count()} cores, Python {platform.python_version()}"


def append_row(name: str, figures: Mapping[str, Any]) -> None:
    """Append one row (date, machine, command, figures) to the results log of docs/benchmarks.md."""
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if LOG_HEADER not in text:
        text = text.rstrip("\n") + (
            f"\n\n{LOG_HEADER}\n\nOne row per benchmark run, appended by `make bench`.\n\n"
            "| date (UTC) | machine | command | figures |\n| --- | --- | --- | --- |\n"
        )
    shown = "; ".join(f"{k} = {_fmt(v)}" for k, v in figures.items())
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")
    row = f"| {date} | {machine()}; tree {tree()} | `python -m bench {name}` | {shown} |\n"
    DOC.write_text(text.rstrip("\n") + "\n" + row)


def tree() -> str:
    """The commit measured, and whether the working tree had local changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "wfbatch"], cwd=REPO, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return head.stdout.strip() + (" + local changes" if dirty.stdout.strip() else "")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value).replace("|", "/")


def report(title: str, figures: Mapping[str, Any]) -> None:
    print(f"\n== {title}")
    for key, value in figures.items():
        print(f"  {key:<34} {_fmt(value)}")


@dataclass(frozen=True)
class TimeScale:
    """Simulated time: every duration of the real API (60 s windows, the 1 s × 1.5 ≤ 10 s poll
    schedule, execution latencies) divided by `factor`, for the simulator, wfbatch and the baseline."""

    factor: float

    @property
    def window(self) -> float:
        return 60.0 / self.factor

    def __call__(self, seconds: float) -> float:
        return seconds / self.factor

    @property
    def poll(self) -> tuple[float, float, float]:
        """(initial, factor, max) of the documented poll schedule, scaled."""
        return (self(1.0), 1.5, self(10.0))


PRODUCTS = (
    "ceramic mug",
    "leather wallet",
    "wireless earbuds",
    "desk lamp",
    "running shoe",
    "wrist watch",
    "backpack",
    "sunglasses",
    "water bottle",
    "notebook",
)
SCENES = (
    "marble surface",
    "wooden table",
    "white seamless background",
    "beach at sunset",
    "concrete floor",
    "linen cloth",
    "mossy rock",
    "kitchen counter",
    "glass shelf",
    "sand dune",
)


def product_prompts(n: int) -> list[str]:
    """Realistic, template-like prompts (many share their first 20 characters)."""
    return [
        f"Product photo of a {PRODUCTS[i % 10]} on a {SCENES[(i // 10) % 10]}, studio lighting, shot {i}"
        for i in range(n)
    ]


def write_jsonl(path: Path, prompts: list[str], **fields: Any) -> Path:
    path.write_text("".join(json.dumps({"prompt": p, **fields}) + "\n" for p in prompts))
    return path


@contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f"wfb-{prefix}-", dir="/tmp") as root:
        yield Path(root)


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFBATCH_") and k != "XDG_RUNTIME_DIR"}
    env.update(extra)
    return env


def wireflow_env(
    base_url: str, scale: TimeScale, *, plan: str, max_in_flight: int, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """wfbatch configured for the simulator: the plan's limits, the scaled window and poll schedule."""
    initial, factor, most = scale.poll
    env = {
        "WFBATCH_PROVIDER": "wireflow",
        "WFBATCH_WIREFLOW__BASE_URL": base_url,
        "WFBATCH_WIREFLOW__API_KEY": API_KEY,
        "WFBATCH_WIREFLOW__WORKFLOW_ID": "wf_demo",
        "WFBATCH_WIREFLOW__PLAN": plan,
        "WFBATCH_WIREFLOW__RATE_WINDOW_SECONDS": str(scale.window),
        "WFBATCH_WIREFLOW__MAX_IN_FLIGHT": str(max_in_flight),
        "WFBATCH_WIREFLOW__POLL_INITIAL": str(initial),
        "WFBATCH_WIREFLOW__POLL_FACTOR": str(factor),
        "WFBATCH_WIREFLOW__POLL_MAX": str(most),
        "WFBATCH_WIREFLOW__BACKOFF_INITIAL": str(scale(2.0)),
        "WFBATCH_WIREFLOW__REQUEST_TIMEOUT": "30",
    }
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class WfbatchRun:
    summary: dict[str, Any]
    finished_at: list[float]
    """Wall-clock times (time.time) at which each done job's image was written, sorted."""
    wall_seconds: float


def run_wfbatch(home: Path, files: list[Path], env: Mapping[str, str], timeout: float = 900) -> WfbatchRun:
    """`wfbatch run FILES --json` in a subprocess; finish times come from the jobs table."""
    home.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "wfbatch", "run", *map(str, files), "--json"],
        env=clean_env({"WFBATCH_HOME": str(home), **env}),
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    wall = time.monotonic() - started
    if done.returncode not in (0, 1):
        raise RuntimeError(f"wfbatch run exited {done.returncode}:\n{done.stderr.decode()[-3000:]}")
    summary: dict[str, Any] = json.loads(done.stdout)
    with sqlite3.connect(home / "wfbatch.db") as db:
        rows = db.execute("SELECT finished_at FROM jobs WHERE state = 'done' ORDER BY finished_at").fetchall()
    return WfbatchRun(summary, [float(r[0]) for r in rows], wall)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
