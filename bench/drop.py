"""Benchmark 6 — drop to queued: from a prompt file's rename into the inbox of a running daemon to
its jobs being queued (visible in `/v1/status`, polled every 5 ms over the socket). The daemon is
paused globally so the jobs stay queued; median of 10 drops of a 20-line file, twice: files written
just before the rename (the watcher waits `inbox.stable_seconds` = 0.5 s for them to hold still),
and files written a second before (older than that: taken at once)."""

from __future__ import annotations

import time
from typing import Any

from bench.common import append_row, median, report, scratch
from tests.daemon_harness import DaemonProcess, jsonl

DROPS = 10
LINES = 20


def measure(age: float) -> list[float]:
    latencies: list[float] = []
    with scratch("drop") as root:
        daemon = DaemonProcess(home=root / "home", socket=root / "d.sock", env={"WFBATCH_PROVIDER": "local"})
        daemon.home.mkdir()
        daemon.start()
        try:
            daemon.post("/v1/pause", {"scope": "global"}).raise_for_status()
            with daemon.http() as http:
                staged_files = []
                for n in range(DROPS):
                    staged = daemon.home / f"drop-{n}.jsonl"
                    staged.write_text(jsonl(*(f"drop {n} prompt {i}" for i in range(LINES))))
                    staged_files.append(staged)
                time.sleep(age)
                for staged in staged_files:
                    if age == 0:
                        staged.write_text(staged.read_text())  # freshly written
                    before = http.get("/v1/status").json()["jobs"]["queued"]
                    started = time.perf_counter()
                    staged.rename(daemon.inbox / staged.name)
                    deadline = started + 30
                    while http.get("/v1/status").json()["jobs"]["queued"] < before + LINES:
                        if time.perf_counter() > deadline:
                            raise TimeoutError(daemon.log())
                        time.sleep(0.005)
                    latencies.append(time.perf_counter() - started)
        finally:
            daemon.stop()
    return latencies


def main() -> dict[str, Any]:
    fresh, aged = measure(0.0), measure(1.0)
    shown: dict[str, Any] = {
        "drops": f"{DROPS} x {LINES} lines",
        "fresh file: median ms": median(fresh) * 1000,
        "fresh file: min-max ms": f"{min(fresh) * 1000:.0f}-{max(fresh) * 1000:.0f}",
        "file written 1 s before: median ms": median(aged) * 1000,
        "file written 1 s before: min-max ms": f"{min(aged) * 1000:.0f}-{max(aged) * 1000:.0f}",
        "inbox.stable_seconds": "0.5 (default)",
    }
    report("drop to queued", shown)
    append_row("drop", shown)
    return shown


if __name__ == "__main__":
    main()
