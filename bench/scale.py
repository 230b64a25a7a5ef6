"""Benchmark 4 — scale: a million jobs in the database. Daemon start-up and RSS (psutil), the
latency of `status` and `jobs --limit 100` through the socket (median of several), and the TUI's
time to first paint (main screen with status and the first page of jobs shown).

The database is built fast for setup: 10,000 real jobs are ingested by wfbatch, then copied with
`executemany` straight into the schema to make 100 batches of 10,000 (all finished: done, with 2 %
failed and 1 % canceled, finished more than a week ago, so the daemon has no work that would
disturb the measurements: nothing to run, no manifest to reconcile). `status` is measured twice:
right after start, while the start-up counter check and reconcile scan run in the background, and
after the daemon logs that the check ended."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench.common import append_row, clean_env, median, report, scratch
from bench.ingest import COLUMNS
from tests.daemon_harness import DaemonProcess
from wfbatch.client.client import DaemonClient
from wfbatch.core.parsing import parse_prompt_bytes
from wfbatch.engine.intake.ingest import ingest
from wfbatch.engine.loop.scheduler import RECONCILE_WINDOW
from wfbatch.home import HomeLayout
from wfbatch.store import Reuse, Store

BATCHES = 100
PER_BATCH = 10_000
REPEATS = 7
AGE = RECONCILE_WINDOW + 24 * 3600.0
"""How long ago the jobs finished (seconds): past the start-up reconcile's window."""


async def _seed(home: Path) -> None:
    layout = HomeLayout(home)
    layout.ensure()
    raw = "".join(
        json.dumps(
            {"prompt": f"Product photo of item {i} on a marble surface", "width": 1024, "height": 1024}
        )
        + "\n"
        for i in range(PER_BATCH)
    ).encode()
    store = await Store.open(layout.db)
    try:
        await ingest(store, layout, parse_prompt_bytes(raw, "seed.jsonl"), raw, "local", reuse=Reuse.NEVER)
    finally:
        await store.close()


def build_db(home: Path) -> float:
    started = time.perf_counter()
    asyncio.run(_seed(home))
    db = sqlite3.connect(home / "wfbatch.db", isolation_level=None)
    try:
        db.row_factory = sqlite3.Row
        batch = dict(db.execute("SELECT * FROM batches").fetchone())
        db.row_factory = None
        template = db.execute(f"SELECT {', '.join(COLUMNS)} FROM jobs ORDER BY id").fetchall()
        db.execute("BEGIN")
        for b in range(1, BATCHES):
            batch_id = f"{batch['id']}x{b:03d}"
            # By column name: migrations add batch columns after `canonical`. The copies are not
            # their content's canonical batch (a UNIQUE index holds one).
            copy = {**batch, "id": batch_id, "name": f"{batch['name']}-{b}", "canonical": 0}
            db.execute(
                f"INSERT INTO batches ({', '.join(copy)}) VALUES ({', '.join('?' * len(copy))})",
                tuple(copy.values()),
            )
            db.executemany(
                f"INSERT INTO jobs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                ((f"{row[0][:24]}{b:08x}", batch_id, *row[2:]) for row in template),
            )
        # Finished more than a week ago: a real HOME's finished batches have their manifests, so the
        # daemon's start-up reconcile (batches changed within RECONCILE_WINDOW whose manifest is
        # older than their last change) has nothing to rewrite. Copied rows of a fresh ingest with
        # no manifests had it rewrite 100 manifests of 10,000 jobs during the measurements (the
        # 2026-11-30 19:46 row: RSS 194 MB, status up to 1 s, TUI first paint 2.9 s).
        db.execute(
            "UPDATE jobs SET state = CASE WHEN id % 50 = 0 THEN 'failed' WHEN id % 100 = 1 THEN 'canceled'"
            " ELSE 'done' END, attempts = 1, created_at = created_at - ?, started_at = created_at - ? + 5,"
            " finished_at = created_at - ? + 30, updated_at = created_at - ? + 30,"
            " error_message = CASE WHEN id % 50 = 0 THEN 'Content moderation' END",
            (AGE,) * 4,
        )
        db.execute("UPDATE batches SET created_at = created_at - ?", (AGE,))
        # What a paid run leaves: a charge row per done job, so the credit sums `status` shows
        # have a ledger of a million jobs' size behind them.
        db.execute(
            "INSERT INTO ledger (job_id, batch_id, provider, day, kind, credits, at)"
            " SELECT id, batch_id, provider, '2026-11-24', 'charge', 1.0, finished_at FROM jobs"
            " WHERE state = 'done'"
        )
        db.execute("COMMIT")
        total = db.execute("SELECT count(*) FROM jobs").fetchone()[0]
    finally:
        db.close()
    assert total == BATCHES * PER_BATCH, total
    return time.perf_counter() - started


async def _check_counters(db: Path) -> tuple[float, tuple[str, ...]]:
    store = await Store.open(db)
    try:
        started = time.perf_counter()
        check = await store.counters.check_counters()
        return time.perf_counter() - started, check.rebuilt
    finally:
        await store.close()


def counters_agree(db: Path) -> bool:
    """The per-(batch, provider, state) counters equal COUNT(*) grouped the same way."""
    with sqlite3.connect(db) as conn:
        kept = set(conn.execute("SELECT batch_id, provider, state, n FROM job_counts WHERE n <> 0"))
        counted = set(
            conn.execute(
                "SELECT batch_id, provider, state, COUNT(*) FROM jobs GROUP BY batch_id, provider, state"
            )
        )
    return kept == counted


def timed_get(daemon: DaemonProcess, path: str, **params: Any) -> float:
    with daemon.http(timeout=30) as http:
        started = time.perf_counter()
        response = http.get(path, params=params)
        elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed


def wait_for_startup_scans(daemon: DaemonProcess) -> float:
    """Seconds from now until the daemon logs that its start-up counter check ended (bounded)."""
    started = time.perf_counter()
    while "counters checked against the tables" not in daemon.log():
        if time.perf_counter() - started > 120:
            raise TimeoutError("the daemon's counter check did not end within 120 s")
        time.sleep(0.05)
    return time.perf_counter() - started


def cli_seconds(daemon: DaemonProcess, *args: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "wfbatch", *args, "--socket", str(daemon.socket)],
        env=clean_env({"WFBATCH_HOME": str(daemon.home)}),
        capture_output=True,
        check=True,
        timeout=60,
    )
    return time.perf_counter() - started


async def tui_first_paint(socket: Path) -> float:
    from wfbatch.tui import WfbatchApp

    app = WfbatchApp(DaemonClient(socket), close_client=True, graphics=False)
    started = time.perf_counter()
    async with app.run_test(size=(120, 40)) as pilot:
        deadline = started + 60
        while not (
            app.current_mode == "main" and app.main_screen.status is not None and app.main_screen.jobs.loaded
        ):
            if time.perf_counter() > deadline:
                raise TimeoutError("the TUI did not show the main screen within 60 s")
            await asyncio.sleep(0.005)
        await pilot.pause()
        return time.perf_counter() - started


def main() -> dict[str, Any]:
    with scratch("scale") as root:
        home = root / "home"
        build_seconds = build_db(home)
        check_seconds, rebuilt = asyncio.run(_check_counters(home / "wfbatch.db"))
        daemon = DaemonProcess(home=home, socket=root / "d.sock", env={"WFBATCH_PROVIDER": "local"})
        started = time.perf_counter()
        daemon.start(timeout=120)
        startup = time.perf_counter() - started
        try:
            proc = psutil.Process(daemon.pid)
            # Right after start the counter check and the manifests' reconcile scan the million
            # rows in the background (on connections of their own); then the daemon is idle.
            status_start = [timed_get(daemon, "/v1/status") for _ in range(REPEATS)]
            background = wait_for_startup_scans(daemon)
            rss_idle = proc.memory_info().rss
            status = [timed_get(daemon, "/v1/status") for _ in range(REPEATS)]
            metrics = [timed_get(daemon, "/v1/metrics") for _ in range(REPEATS)]
            jobs = [timed_get(daemon, "/v1/jobs", limit=100) for _ in range(REPEATS)]
            jobs_failed = [timed_get(daemon, "/v1/jobs", limit=100, state="failed") for _ in range(REPEATS)]
            cli_status = [cli_seconds(daemon, "status", "--json") for _ in range(3)]
            cli_jobs = [cli_seconds(daemon, "jobs", "--limit", "100", "--json") for _ in range(3)]
            paint = [asyncio.run(tui_first_paint(daemon.socket)) for _ in range(3)]
            rss_after = proc.memory_info().rss
        finally:
            daemon.stop()
        agree = counters_agree(home / "wfbatch.db")
    shown: dict[str, Any] = {
        "jobs in db": BATCHES * PER_BATCH,
        "db build s (setup)": build_seconds,
        "counter check at start s (COUNT(*) vs counters)": check_seconds,
        "counters rebuilt by the check": ", ".join(rebuilt) or "none",
        "counters == COUNT(*) after the run": "yes" if agree else "NO",
        "daemon start s (until /v1/health)": startup,
        "status ms during the start-up scans (median)": median(status_start) * 1000,
        "status ms during the start-up scans (min-max)": (
            f"{min(status_start) * 1000:.1f}-{max(status_start) * 1000:.1f}"
        ),
        "start-up scans still running after the first statuses s": background,
        "daemon RSS MB idle": rss_idle / 2**20,
        "daemon RSS MB after queries": rss_after / 2**20,
        "status ms (socket, median, after the start-up scans)": median(status) * 1000,
        "status ms (socket, min-max)": f"{min(status) * 1000:.1f}-{max(status) * 1000:.1f}",
        "metrics ms (socket, median)": median(metrics) * 1000,
        "jobs --limit 100 ms (socket, median)": median(jobs) * 1000,
        "jobs state=failed limit 100 ms (median)": median(jobs_failed) * 1000,
        "wfbatch status --json ms (CLI process)": median(cli_status) * 1000,
        "wfbatch jobs --limit 100 ms (CLI process)": median(cli_jobs) * 1000,
        "TUI first paint ms (median of 3)": median(paint) * 1000,
        "TUI first paint ms (min-max)": f"{min(paint) * 1000:.0f}-{max(paint) * 1000:.0f}",
    }
    report("scale: a million jobs", shown)
    append_row("scale", shown)
    return shown


if __name__ == "__main__":
    main()
