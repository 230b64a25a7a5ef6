"""Crash: kill -9 the daemon at random moments of a simulator batch, restarting it each time.
Afterwards: no job lost, one execution per job (the simulator's count per idempotency key), every
manifest equal to the database, every image file a valid image."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.daemon_harness import jsonl, running_daemon
from tests.reliability.support import SOAK, db_rows, pick, state_counts, wireflow_env
from wfbatch.sim import RunningSimulator, SimOptions

KEY = "sk-crash-test-key"
JOBS = pick(30, 300)
KILLS = pick(3, 20)
GAP = pick((0.2, 1.0), (0.3, 2.5))
"""Seconds between a (re)start answering and the next kill, drawn uniformly."""


@pytest.mark.timeout(pick(120, 900))
def test_kill_9_at_random_moments_loses_nothing_and_pays_once(capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(20260101)
    options = SimOptions(latency=(0.3, 1.2), seed=3, rpm=100_000, epm=100_000, daily=1_000_000, api_key=KEY)
    with RunningSimulator(options) as sim, running_daemon(env=wireflow_env(sim.base_url, KEY)) as daemon:
        daemon.drop("crash.jsonl", jsonl(*(f"crash test prompt {i}" for i in range(JOBS))))
        daemon.wait_for_jobs(lambda jobs: sum(jobs.values()) == JOBS, timeout=30)
        kills_mid_work = 0
        for _ in range(KILLS):
            time.sleep(rng.uniform(*GAP))
            if daemon.status()["jobs"]["done"] < JOBS:
                kills_mid_work += 1
            daemon.kill()
            daemon.start()
        daemon.wait_for_jobs(lambda jobs: jobs["done"] == JOBS, timeout=pick(60, 300))
        daemon.stop()  # a clean stop: the manifests are flushed
        assert daemon.returncode == 0, daemon.log()[-4000:]

        db = daemon.home / "wfbatch.db"
        assert state_counts(db) == {"done": JOBS}
        stats = sim.state.stats()
        by_key: dict[str, int] = stats["executions_by_key"]
        assert len(by_key) == JOBS and stats["executions_created"] == JOBS
        assert set(by_key.values()) == {1}, {k: n for k, n in by_key.items() if n != 1}

        rows = db_rows(
            db, "SELECT j.id, j.state, j.file, b.output_dir FROM jobs j JOIN batches b ON b.id = j.batch_id"
        )
        by_dir: dict[str, dict[str, tuple[str, str]]] = {}
        for job_id, state, file, output_dir in rows:
            by_dir.setdefault(output_dir, {})[str(job_id)] = (state, file)
        for output_dir, expected in by_dir.items():
            manifest = json.loads((Path(output_dir) / "manifest.json").read_text())
            found = {e["job_id"]: (e["status"], e["file"]) for e in manifest["entries"]}
            assert found == expected
            for _state, file in expected.values():
                with Image.open(Path(output_dir) / file) as image:
                    image.verify()
    if SOAK:
        with capsys.disabled():
            print(
                f"\n[crash] jobs={JOBS} kills={KILLS} (mid-work {kills_mid_work})"
                f" restarts={daemon.starts - 1} executions={stats['executions_created']}"
                f" replays={stats['replays']} jobs_lost=0"
            )
